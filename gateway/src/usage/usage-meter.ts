import { createMiddleware } from "hono/factory";
import type { InferenceEnv } from "../openai/inference-request.ts";
import { meterJson } from "../proxy/metered-json.ts";
import {
  meterSse,
  noTokens,
  type StreamEnd,
  type TokenUsage,
  usageInJson,
} from "../proxy/metered-stream.ts";
import type { UsageRecord } from "./record.ts";
import { UsageSender } from "./usage-queue.ts";

/** Called once when the request ends, with the tokens it used; a promise it returns is waited for. */
type EndListener = (tokens: TokenUsage) => unknown;

type UsageVariables = {
  /** `onEnd(listener)`: run `listener` when the request ends (at once if it has). */
  usage: { onEnd(listener: EndListener): void };
  /** The backend that answered, once one has; the usage row names it. */
  backendId: string | null;
  /**
   * The status of the backend's answer, once it came: the client's too, except for an
   * answer held open (200 at once, see held-answer.ts) that came back a refusal.
   */
  answerStatus: number | null;
  /** The answer is held open (200 at once, heartbeats; see held-answer.ts): metered as it streams. */
  held: boolean;
};
export type UsageEnv = InferenceEnv & { Variables: UsageVariables };

type Ending = Pick<UsageRecord, "backendId" | "status" | "outcome">;

/** A refusal the request met after it was resolved, by the status the client got. */
function refusalOutcome(status: number): UsageRecord["outcome"] {
  if (status === 429) return "rate_limited";
  return status >= 500 ? "backend_error" : "invalid";
}

/** A client that went away: 499, as nginx writes it ("client closed request"). */
const clientLeft = { status: 499, outcome: "client_disconnect" } as const;

function isEventStream(response: Response): boolean {
  return response.headers.get("content-type")?.startsWith("text/event-stream") ?? false;
}

/**
 * Meters a resolved inference request (after `inferenceRequest`): exactly one usage row and
 * one log line per request, however it ends, and then the `usage.onEnd` listeners (the
 * limiter's settle, the backend's release) with the tokens it used.
 * - an answer: metered as it passes to the client (`meterJson`): its `usage`, the backend's
 *   status and outcome `ok` (or `invalid` for a 4xx the backend gave, `backend_error` for a
 *   5xx or a body broken off);
 * - an event stream: metered as it passes to the client (`meterSse`): the backend's usage
 *   (for a stream cut short, the usage so far of the last event relayed);
 * - an error thrown after this middleware: the status the client got, outcome
 *   `rate_limited` (429) or `backend_error` (5xx), no tokens;
 * - a client that leaves at any point: status 499, `client_disconnect`, with the tokens
 *   relayed (a stream) or the answer's (a non-streamed answer read whole), else none.
 *
 * @example app.post("/chat/completions", auth, inferenceRequest(...), usageMeter({ now }), handler)
 */
export function usageMeter(options: { now?: () => number; sender?: UsageSender } = {}) {
  const { now = Date.now, sender = new UsageSender() } = options;
  return createMiddleware<UsageEnv>(async function usageMeter(c, next) {
    const { endpoint, body, target } = c.get("inference");
    const { tenantId, keyId } = c.get("principal");
    const listeners: EndListener[] = [];
    let used: TokenUsage | null = null;
    const end = (ending: Ending, tokens: TokenUsage | null) => {
      if (used !== null) return;
      used = tokens ?? noTokens;
      const record: UsageRecord = {
        requestKey: c.get("requestKey"),
        requestId: c.get("requestId"),
        tenantId,
        keyId,
        endpoint,
        model: body.model,
        adapterId: target.adapter?.id ?? null,
        ...ending,
        ...used,
        latencyMs: now() - c.get("startedAt"),
      };
      // One structured line per request; it names the key by id, never the key itself.
      console.log(JSON.stringify({ level: "info", event: "request", ...record }));
      const tokensUsed = used;
      c.executionCtx.waitUntil(
        Promise.all([
          sender.add(c.env, { record, createdAt: now() }),
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
    c.set("answerStatus", null);
    c.set("held", false);

    // A client that leaves before an answer: the backend call is aborted (the handler
    // passes this signal on) and the request is billed as such.
    const clientGone = c.req.raw.signal;
    const onClientGone = () => end({ backendId: null, ...clientLeft }, null);
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
    const backendId = c.get("backendId");
    // What the backend answered: a held answer (200 at once) may still be refused in-band.
    const answered = () => c.get("answerStatus") ?? c.res.status;
    const answeredOutcome = (healthy: boolean): UsageRecord["outcome"] =>
      answered() >= 400 ? refusalOutcome(answered()) : healthy ? "ok" : "backend_error";
    if (c.res.body === null) {
      end({ backendId, status: answered(), outcome: answeredOutcome(true) }, null);
      return;
    }
    // An answer relayed as it comes: a stream, or a JSON answer held open.
    const endRelayed = (relayed: StreamEnd) =>
      end(
        relayed.outcome === "client_disconnect"
          ? { backendId, ...clientLeft }
          : { backendId, status: answered(), outcome: answeredOutcome(relayed.outcome === "ok") },
        relayed.usage,
      );
    if (c.res.ok && isEventStream(c.res)) {
      const wanted = {
        final: body.stream_options?.include_usage === true,
        continuous: body.stream_options?.continuous_usage_stats === true,
      };
      c.res = new Response(meterSse(c.res.body, wanted, endRelayed, clientGone), c.res);
      return;
    }
    if (!c.get("held")) {
      // A whole answer: read at once, so it is billed however the client reads it.
      const text = await c.res.text();
      end({ backendId, status: answered(), outcome: answeredOutcome(true) }, usageInJson(text));
      c.res = new Response(text, c.res);
      return;
    }
    c.res = new Response(meterJson(c.res.body, endRelayed, clientGone), c.res);
  });
}
