import type { Context } from "hono";
import { Hono } from "hono";
import type { GatewayState } from "../app.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { estimateTokens } from "../limits/estimate-tokens.ts";
import { admitRequest, hasLimits, settleRequest } from "../limits/limiter-client.ts";
import { backendBody } from "../proxy/backend-body.ts";
import { forwardWithFailover } from "../proxy/forward.ts";
import { meterSse, type TokenUsage, usageFrom } from "../proxy/metered-stream.ts";
import { bodyLimits, readJsonBody } from "../request-body.ts";
import { rankBackends } from "../routing/rendezvous.ts";
import { recordUsage, type UsageRecord } from "../usage/record.ts";

type InferenceBody = Record<string, unknown> & {
  model: string;
  stream?: boolean;
  max_tokens?: number;
  max_completion_tokens?: number;
  stream_options?: { include_usage?: boolean };
};

function parseBody(raw: unknown, endpoint: "chat" | "completions"): InferenceBody {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ApiError(400, "invalid_request", "The body must be a JSON object");
  }
  const body = raw as Record<string, unknown>;
  if (typeof body.model !== "string" || body.model === "") {
    throw new ApiError(400, "invalid_request", "model is required", { param: "model" });
  }
  if (endpoint === "chat" && (!Array.isArray(body.messages) || body.messages.length === 0)) {
    throw new ApiError(400, "invalid_request", "messages must be a non-empty array", {
      param: "messages",
    });
  }
  if (endpoint === "completions" && !isPrompt(body.prompt)) {
    throw new ApiError(
      400,
      "invalid_request",
      "prompt must be a string, a list of strings, or token ids",
      {
        param: "prompt",
      },
    );
  }
  if (body.stream !== undefined && typeof body.stream !== "boolean") {
    throw new ApiError(400, "invalid_request", "stream must be a boolean", { param: "stream" });
  }
  for (const field of ["max_tokens", "max_completion_tokens"]) {
    const v = body[field];
    if (v !== undefined && v !== null && (!Number.isSafeInteger(v) || (v as number) < 1)) {
      throw new ApiError(400, "invalid_request", `${field} must be a positive integer`, {
        param: field,
      });
    }
  }
  return body as InferenceBody;
}

/**
 * OpenAI's four prompt forms: text, texts, token ids, lists of token ids (one
 * call; the backend batches them). A list mixing texts and token-id lists is
 * none of them, and OpenAI refuses it too.
 */
export function isPrompt(prompt: unknown): boolean {
  const isTokens = (p: unknown) =>
    Array.isArray(p) && p.length > 0 && p.every((t) => Number.isSafeInteger(t));
  if (typeof prompt === "string" || isTokens(prompt)) return true;
  if (!Array.isArray(prompt) || prompt.length === 0) return false;
  return prompt.every((p) => typeof p === "string") || prompt.every(isTokens);
}

/** Longest timeout a client may ask for. */
const maxTimeoutMs = 60 * 60_000;

/**
 * `x-lorafleet-timeout-ms: N` asks the backend to drop the request if it has not
 * finished N ms from now (S-LoRA-style early abort; finish_reason "deadline").
 */
function deadline(header: string | undefined, now: number): number | null {
  if (header === undefined) return null;
  const timeout = Number(header);
  if (!Number.isSafeInteger(timeout) || timeout < 1 || timeout > maxTimeoutMs) {
    throw new ApiError(
      400,
      "invalid_request",
      `x-lorafleet-timeout-ms must be 1..${maxTimeoutMs} milliseconds`,
    );
  }
  return now + timeout;
}

/** POST /v1/chat/completions and /v1/completions. */
export function inferenceRoutes(state: GatewayState) {
  const app = new Hono<AppEnv>();
  const auth = apiKeyAuth(state.keys, "inference", state.now);
  app.post("/chat/completions", auth, (c) => handleInference(c, state, "chat"));
  app.post("/completions", auth, (c) => handleInference(c, state, "completions"));
  return app;
}

async function handleInference(
  c: Context<AppEnv>,
  state: GatewayState,
  endpoint: "chat" | "completions",
) {
  const principal = c.get("principal");
  const requestId = c.get("requestId");
  const path = endpoint === "chat" ? "/v1/chat/completions" : "/v1/completions";
  const body = parseBody(await readJsonBody(c.req.raw, bodyLimits.inference), endpoint);
  const deadlineMs = deadline(c.req.header("x-lorafleet-timeout-ms"), state.now());
  const target = await state.models.resolve(c.env, principal, body.model);
  const stream = body.stream === true;
  const estimate = estimateTokens(body);

  const usageBase = {
    requestId,
    tenantId: principal.tenantId,
    keyId: principal.keyId,
    endpoint: path,
    model: body.model,
    adapterId: target.adapter?.id ?? null,
  };
  const limited = hasLimits(principal.limits);
  let finished = false;
  /** Ends the request's accounting, once: the usage row, the log line, the limiter settle. */
  const finish = (
    r: Pick<UsageRecord, "backendId" | "status" | "outcome">,
    usage: TokenUsage | null,
    settle: boolean,
  ) => {
    if (finished) return;
    finished = true;
    const tokens = usage ?? { promptTokens: 0, completionTokens: 0 };
    const latencyMs = state.now() - c.get("startedAt");
    const record = { ...usageBase, ...r, ...tokens, latencyMs };
    // One structured line per request; it names the key by id, never the key itself.
    console.log(JSON.stringify({ level: "info", event: "request", ...record }));
    const writes = [recordUsage(c.env.DB, record, state.now())];
    if (settle && limited)
      writes.push(
        settleRequest(
          c.env,
          principal.tenantId,
          requestId,
          tokens.promptTokens + tokens.completionTokens,
        ),
      );
    c.executionCtx.waitUntil(Promise.all(writes));
  };

  try {
    if (limited)
      await admitRequest(c.env, principal, { requestId, estimatedTokens: estimate.total, stream });
  } catch (error) {
    finish({ backendId: null, status: 429, outcome: "rate_limited" }, null, false);
    throw error;
  }

  // A client that leaves before the backend answered: the backend call is
  // aborted (the signal is passed to fetch) and the request is billed as such.
  const clientGone = c.req.raw.signal;
  const onClientGone = () =>
    finish({ backendId: null, status: 499, outcome: "client_disconnect" }, null, true);
  clientGone.addEventListener("abort", onClientGone);

  // Adapter requests meet on the adapter's backend; base-model requests need no
  // affinity (every backend holds the base), so the request id spreads them.
  const ranked = rankBackends(
    target.adapter?.id ?? requestId,
    await state.backends.candidates(c.env, target.baseModel),
  );
  const forwarded = await forwardWithFailover(
    c.env,
    state.backends,
    ranked,
    path,
    async (backend) =>
      JSON.stringify(
        await backendBody(
          c.env,
          {
            origin: c.env.PUBLIC_URL || new URL(c.req.url).origin,
            tenantId: principal.tenantId,
            requestId,
            backendId: backend.id,
            now: state.now(),
            deadlineMs,
          },
          body,
          target,
        ),
      ),
    requestId,
    state.now,
    clientGone,
  );
  if (forwarded === null) {
    finish({ backendId: null, status: 503, outcome: "backend_error" }, null, true);
    throw new ApiError(
      503,
      "no_backend_available",
      `No backend for ${target.baseModel} answered; try again shortly`,
      {
        headers: { "retry-after": "1" },
      },
    );
  }
  const { backend, response } = forwarded;
  c.set("upstreamMs", forwarded.waitedMs);

  if (!response.ok || !stream || response.body === null) {
    const text = await response.text().finally(() => state.backends.end(backend.id));
    clientGone.removeEventListener("abort", onClientGone);
    let usage: TokenUsage | null = null;
    try {
      usage = usageFrom(JSON.parse(text));
    } catch {
      // A non-JSON body has no usage; the status tells what happened.
    }
    finish(
      { backendId: backend.id, status: response.status, outcome: response.ok ? "ok" : "invalid" },
      usage,
      true,
    );
    const headers = new Headers({
      "content-type": response.headers.get("content-type") ?? "application/json",
    });
    const retryAfter = response.headers.get("retry-after");
    if (retryAfter !== null) headers.set("retry-after", retryAfter);
    return new Response(text, { status: response.status, headers });
  }

  clientGone.removeEventListener("abort", onClientGone); // the stream reports its own end
  const metered = meterSse(
    response.body,
    body.stream_options?.include_usage === true,
    (end) => {
      state.backends.end(backend.id);
      // Without the backend's usage event (a cut or cancelled stream), prompt
      // tokens are the estimate and completion tokens the events that carried text.
      const usage = end.usage ?? {
        promptTokens: estimate.prompt,
        completionTokens: end.contentEvents,
      };
      finish({ backendId: backend.id, status: 200, outcome: end.outcome }, usage, true);
    },
    c.req.raw.signal,
  );
  return new Response(metered, {
    status: 200,
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}
