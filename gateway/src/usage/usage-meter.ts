import { createMiddleware } from "hono/factory";
import type { InferenceEnv } from "../openai/inference-request.ts";
import { meterSse, type TokenUsage, usageFrom } from "../proxy/metered-stream.ts";
import { recordUsage, type UsageRecord } from "./record.ts";

/** Called once when the request ends, with the tokens it used; a promise it returns is waited for. */
type EndListener = (tokens: TokenUsage) => unknown;

type UsageVariables = {
  /** `onEnd(listener)`: run `listener` when the request ends (at once if it has). */
  usage: { onEnd(listener: EndListener): void };
  /** The backend that answered, once one has; the usage row names it. */
  backendId: string | null;
};
export type UsageEnv = InferenceEnv & { Variables: UsageVariables };

type Ending = Pick<UsageRecord, "backendId" | "status" | "outcome">;

const noTokens: TokenUsage = { promptTokens: 0, completionTokens: 0 };

/** A refusal the request met after it was resolved, by the status the client got. */
function refusalOutcome(status: number): UsageRecord["outcome"] {
  if (status === 429) return "rate_limited";
  return status >= 500 ? "backend_error" : "invalid";
}

function isEventStream(response: Response): boolean {
  return response.headers.get("content-type")?.startsWith("text/event-stream") ?? false;
}

/**
 * Meters a resolved inference request (after `inferenceRequest`): exactly one usage row and
 * one log line per request, however it ends, and then the `usage.onEnd` listeners (the
 * limiter's settle, the backend's release) with the tokens it used.
 * - an answer: its `usage`, status and outcome `ok` (or `invalid` for a 4xx the backend gave);
 * - an event stream: metered as it passes to the client (`meterSse`): the backend's usage
 *   event, or for a stream cut short the estimated prompt and the content events delivered;
 * - an error thrown after this middleware: the status the client got, outcome
 *   `rate_limited` (429) or `backend_error` (5xx), no tokens;
 * - a client that leaves before the answer: status 499, `client_disconnect`.
 *
 * @example app.post("/chat/completions", auth, inferenceRequest(...), usageMeter({ now }), handler)
 */
export function usageMeter(options: { now?: () => number } = {}) {
  const { now = Date.now } = options;
  return createMiddleware<UsageEnv>(async function usageMeter(c, next) {
    const { endpoint, body, target, estimate } = c.var.inference;
    const { tenantId, keyId } = c.var.principal;
    const listeners: EndListener[] = [];
    let used: TokenUsage | null = null;
    const end = (ending: Ending, tokens: TokenUsage | null) => {
      if (used !== null) return;
      used = tokens ?? noTokens;
      const record: UsageRecord = {
        requestKey: c.var.requestKey,
        requestId: c.var.requestId,
        tenantId,
        keyId,
        endpoint,
        model: body.model,
        adapterId: target.adapter?.id ?? null,
        ...ending,
        ...used,
        latencyMs: now() - c.var.startedAt,
      };
      // One structured line per request; it names the key by id, never the key itself.
      console.log(JSON.stringify({ level: "info", event: "request", ...record }));
      const tokensUsed = used;
      c.executionCtx.waitUntil(
        Promise.all([
          recordUsage(c.env.DB, record, now()),
          ...listeners.map(async (listener) => listener(tokensUsed)),
        ]),
      );
    };
    c.set("usage", {
      onEnd(listener) {
        const tokensUsed = used;
        if (tokensUsed === null) listeners.push(listener);
        else c.executionCtx.waitUntil((async () => listener(tokensUsed))());
      },
    });
    c.set("backendId", null);

    // A client that leaves before an answer: the backend call is aborted (the handler
    // passes this signal on) and the request is billed as such.
    const clientGone = c.req.raw.signal;
    const onClientGone = () =>
      end({ backendId: null, status: 499, outcome: "client_disconnect" }, null);
    clientGone.addEventListener("abort", onClientGone);
    try {
      await next();
    } finally {
      clientGone.removeEventListener("abort", onClientGone);
    }

    if (c.error !== undefined) {
      end({ backendId: null, status: c.res.status, outcome: refusalOutcome(c.res.status) }, null);
      return;
    }
    const { status, ok } = c.res;
    const backendId = c.var.backendId;
    if (ok && c.res.body !== null && isEventStream(c.res)) {
      const metered = meterSse(
        c.res.body,
        body.stream_options?.include_usage === true,
        (streamEnd) =>
          end(
            { backendId, status, outcome: streamEnd.outcome },
            // Without the backend's usage event (a cut or cancelled stream), prompt tokens
            // are the estimate and completion tokens the events that carried text.
            streamEnd.usage ?? {
              promptTokens: estimate.prompt,
              completionTokens: streamEnd.contentEvents,
            },
          ),
        clientGone,
      );
      c.res = new Response(metered, c.res);
      return;
    }
    const answer: unknown = await c.res
      .clone()
      .json()
      .catch(() => null); // a non-JSON answer has no usage; its status tells what happened
    end({ backendId, status, outcome: ok ? "ok" : "invalid" }, usageFrom(answer));
  });
}
