// A bare Hono app for testing one middleware at a time (hono's way: `app.request(...)`,
// no network), in the Workers runtime with the real local D1 and Durable Objects: the
// variables the middleware before it would have set, the gateway's own error rendering.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { ChatCompletionRequestSchema } from "@lorafleet/api";
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { renderError } from "../../src/app.ts";
import type { Principal, TenantLimits } from "../../src/auth/principal.ts";
import type { AppEnv } from "../../src/env.ts";
import { newId } from "../../src/ids.ts";
import { defaultTokenBounds, estimateTokens } from "../../src/limits/estimate-tokens.ts";
import type { InferenceEnv } from "../../src/openai/inference-request.ts";
import { unique } from "./gateway-client.ts";

/** What `apiKeyAuth` resolves a key to, for a tenant of its own with these limits. */
export function principalWith(limits: Partial<TenantLimits> = {}): Principal {
  return {
    keyId: unique("key"),
    tenantId: unique("tn"),
    tenantName: "tenant",
    tenantStatus: "active",
    scopes: ["inference"],
    expiresAt: null,
    limits: {
      requestsPerMinute: null,
      tokensPerMinute: null,
      concurrentStreams: null,
      monthlyTokenQuota: null,
      ...limits,
    },
    adapterQuota: { maxAdapters: 10, maxAdapterBytes: 1_000_000, maxRank: 16 },
    allowedBaseModels: [],
    sharePrefixCache: false,
  };
}

/**
 * Sets what `requestContext` and `apiKeyAuth` set: the request id (`x-request-id`), the
 * gateway's own request key, start time, principal.
 */
export function authenticatedAs(principal: Principal, startedAt = Date.now()) {
  return createMiddleware<InferenceEnv>(async function authenticatedAs(c, next) {
    c.set("requestId", c.req.header("x-request-id") ?? crypto.randomUUID());
    c.set("requestKey", newId("req_"));
    c.set("startedAt", startedAt);
    c.set("upstreamMs", 0);
    c.set("principal", principal);
    await next();
  });
}

/** Sets what `inferenceRequest` sets for a chat body (JSON in the request, or `body`) of base model `m`. */
export function resolvedChat(body: object = {}) {
  return createMiddleware<InferenceEnv>(async function resolvedChat(c, next) {
    const json = {
      model: "m",
      messages: [{ role: "user", content: "hello there" }],
      ...body,
      ...(c.req.header("content-type") === "application/json" ? await c.req.json() : {}),
    };
    const parsed = ChatCompletionRequestSchema.parse(json);
    c.set("inference", {
      endpoint: "/v1/chat/completions",
      json,
      body: parsed,
      target: { baseModel: "m", bounds: defaultTokenBounds, adapter: null },
      estimate: estimateTokens(parsed, defaultTokenBounds),
      deadlineMs: null,
    });
    await next();
  });
}

/** A Hono app that renders errors as the gateway does; add the middleware under test. */
export function bareApp() {
  const app = new Hono<AppEnv>();
  app.onError(renderError);
  return app;
}

/**
 * A bare app whose requests arrive authenticated as `principal` (at `startedAt`) and
 * resolved as a chat of base model `m` (`resolvedChat(body)`): what the middleware after
 * `inferenceRequest` finds.
 */
export function resolvedChatApp(
  principal: Principal,
  options: { startedAt?: number; body?: object } = {},
) {
  const app = bareApp();
  app.use(authenticatedAs(principal, options.startedAt), resolvedChat(options.body));
  return app;
}

/** Sends `request` to `app` with the test bindings, and waits for what it left running (usage writes, settles). */
export async function send(
  app: Hono<AppEnv>,
  path: string,
  init: RequestInit = {},
): Promise<Response> {
  const ctx = createExecutionContext();
  const response = await app.request(path, { method: "POST", ...init }, env, ctx);
  await response.clone().arrayBuffer();
  await waitOnExecutionContext(ctx);
  return response;
}
