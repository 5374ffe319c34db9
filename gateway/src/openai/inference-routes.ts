import { inferenceEndpoints } from "@lorafleet/api";
import type { Context } from "hono";
import { Hono } from "hono";
import type { GatewayState } from "../app.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { limitAdmission } from "../limits/limit-admission.ts";
import { backendBody } from "../proxy/backend-body.ts";
import { cacheSalt } from "../proxy/cache-salt.ts";
import { forwardWithFailover } from "../proxy/forward.ts";
import { heldAnswer, holdAfterMs } from "../proxy/held-answer.ts";
import { conversationKey, rankForConversation } from "../routing/conversation-affinity.ts";
import { conversationHead } from "../routing/conversation-head.ts";
import { type UsageEnv, usageMeter } from "../usage/usage-meter.ts";
import { inferenceRequest } from "./inference-request.ts";

/**
 * POST /v1/chat/completions and /v1/completions, in the request's order: the key, the
 * request read and its model resolved, metered from there on, admitted by the tenant's
 * limits, then forwarded.
 */
export function inferenceRoutes(state: GatewayState) {
  const app = new Hono<AppEnv>();
  const auth = apiKeyAuth(state.keys, "inference", state.now);
  for (const endpoint of inferenceEndpoints) {
    app.post(
      endpoint.slice("/v1".length),
      auth,
      inferenceRequest(endpoint, { models: state.models, now: state.now }),
      usageMeter({ now: state.now, sender: state.usage }),
      limitAdmission(state.slices),
      (c) => forwardInference(c, state),
    );
  }
  return app;
}

/** Resolves with null after `ms`, unless `settled` settles first (its outcome then wins). */
async function within<T>(settled: Promise<T>, ms: number): Promise<T | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      settled,
      new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Forwards the request and answers what the backend answered; when that takes longer than
 * `holdAfterMs`, answers 200 at once and holds the answer open with heartbeats until it
 * comes (`heldAnswer`), so a client that goes away is noticed and the backend call aborted
 * at any point: before the backend's headers, mid-stream, or while a non-streamed answer is
 * generated. Whichever way the client is seen to leave (the request's signal, or the
 * answer's stream cancelled), the backend call is aborted.
 */
async function forwardInference(c: Context<UsageEnv>, state: GatewayState) {
  const backendCall = new AbortController();
  const clientGone = c.req.raw.signal;
  const leave = () => backendCall.abort(clientGone.reason);
  if (clientGone.aborted) leave();
  else clientGone.addEventListener("abort", leave, { once: true });
  const started = state.now();
  const answer = answerFromBackend(c, state, backendCall.signal);
  const early = await within(answer, holdAfterMs);
  if (early !== null) return early;
  c.set("upstreamMs", state.now() - started);
  c.set("held", true);
  const format = c.get("inference").body.stream === true ? "event-stream" : "json";
  return heldAnswer(answer, format, (reason) => backendCall.abort(reason));
}

/**
 * Sends the request to the backends ranked for its model, with failover, and answers what
 * the first that took it answered, its body as it comes (metered by `usageMeter`), with its
 * status. The backend is released when the request ends.
 */
async function answerFromBackend(
  c: Context<UsageEnv>,
  state: GatewayState,
  signal: AbortSignal,
): Promise<Response> {
  const { endpoint, json, body, target, deadlineMs } = c.get("inference");
  const principal = c.get("principal");
  const requestId = c.get("requestId");
  const salt = await cacheSalt(c.env.BACKEND_SECRET, principal);
  // A conversation goes where its prefix is cached, within its adapter's home backends.
  const ranked = rankForConversation(
    conversationKey(salt, target.adapter?.id ?? null, target.baseModel, conversationHead(body)),
    await state.backends.candidates(c.env, target.baseModel, (work) =>
      c.executionCtx.waitUntil(work),
    ),
  );
  const envelope = {
    origin: c.env.PUBLIC_URL || new URL(c.req.url).origin,
    tenantId: principal.tenantId,
    requestId,
    deadlineMs,
    cacheSalt: salt,
  };
  const forwarded = await forwardWithFailover(
    c.env,
    state.backends,
    ranked,
    endpoint,
    async (backend) =>
      JSON.stringify(
        await backendBody(
          c.env,
          { ...envelope, backendId: backend.id, now: state.now() },
          json,
          target,
        ),
      ),
    requestId,
    state.now,
    signal,
  );
  if (forwarded === null) {
    const error = new ApiError(
      503,
      "no_backend_available",
      `No backend for ${target.baseModel} answered; try again shortly`,
      { headers: { "retry-after": "1" } },
    );
    c.set("answerStatus", error.status);
    throw error;
  }
  const { backend, response } = forwarded;
  c.set("upstreamMs", forwarded.waitedMs);
  c.set("backendId", backend.id);
  c.set("answerStatus", response.status);
  c.get("usage").onEnd(() => state.backends.end(backend.id));

  if (response.ok && c.get("inference").body.stream === true && response.body !== null) {
    return new Response(response.body, {
      status: 200,
      headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
    });
  }
  const headers = new Headers({
    "content-type": response.headers.get("content-type") ?? "application/json",
  });
  const retryAfter = response.headers.get("retry-after");
  if (retryAfter !== null) headers.set("retry-after", retryAfter);
  return new Response(response.body, { status: response.status, headers });
}
