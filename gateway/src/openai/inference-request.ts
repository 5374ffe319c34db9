import { type InferenceEndpoint, type InferenceRequest, requestSchemas } from "@lorafleet/api";
import { createMiddleware } from "hono/factory";
import type { Env, Variables } from "../env.ts";
import { ApiError } from "../errors.ts";
import { estimateTokens, type TokenEstimate } from "../limits/estimate-tokens.ts";
import { bodyLimits, readJson } from "../request-body.ts";
import { parseWith } from "../validation.ts";
import type { ModelResolver, ModelTarget } from "./resolve-model.ts";

/** An inference request once read and resolved: what the middleware after `inferenceRequest` reads. */
export type InferenceCall = {
  endpoint: InferenceEndpoint;
  /** The client's JSON as sent: forwarded unchanged, plus the gateway's own fields. */
  json: Record<string, unknown>;
  /** The same body as the shared schema reads it (@lorafleet/api), exactly as a backend will. */
  body: InferenceRequest;
  target: ModelTarget;
  estimate: TokenEstimate;
  /** Absolute unix ms after which the backend drops the request; null = none. */
  deadlineMs: number | null;
};

type InferenceVariables = { inference: InferenceCall };
export type InferenceEnv = { Bindings: Env; Variables: Variables & InferenceVariables };

/** Longest timeout a client may ask for. */
export const maxTimeoutMs = 60 * 60_000;

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

/**
 * Reads an inference request for `endpoint` (after `apiKeyAuth`): the body, bounded and
 * checked with the endpoint's shared schema, so a body the backend would refuse is refused
 * here in the backend's words and none it accepts is; the deadline header; the model the
 * tenant named. Sets `inference`.
 *
 * @example app.post("/completions", auth, inferenceRequest("/v1/completions", { models }), handler)
 */
export function inferenceRequest(
  endpoint: InferenceEndpoint,
  options: { models: ModelResolver; now?: () => number },
) {
  const { models, now = Date.now } = options;
  const schema = requestSchemas[endpoint];
  return createMiddleware<InferenceEnv>(async function inferenceRequest(c, next) {
    const json = await readJson(c.req.raw, bodyLimits.inference);
    const body: InferenceRequest = parseWith(schema, json);
    const deadlineMs = deadline(c.req.header("x-lorafleet-timeout-ms"), now());
    const target = await models.resolve(c.env, c.get("principal"), body.model, (work) =>
      c.executionCtx.waitUntil(work),
    );
    c.set("inference", {
      endpoint,
      json: json as Record<string, unknown>,
      body,
      target,
      estimate: estimateTokens(body, target.bounds),
      deadlineMs,
    });
    await next();
  });
}
