import { createMiddleware } from "hono/factory";
import type { TenantLimits } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import type { UsageEnv } from "../usage/usage-meter.ts";

/** A tenant with no limit set needs no admission: its requests skip the Durable Object round trip. */
function hasLimits(limits: TenantLimits): boolean {
  return Object.values(limits).some((limit) => limit !== null);
}

/** The tenant's TenantLimiter instance: one per tenant id, wherever the request lands. */
function limiterFor(env: Env, tenantId: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(tenantId));
}

/**
 * Admits a metered inference request (after `usageMeter`) against its tenant's limits: the
 * tenant's TenantLimiter Durable Object reserves the estimated tokens (and a stream slot),
 * or the request ends here with the 429 the client gets, with Retry-After in seconds. An
 * admitted request settles its reservation with the tokens it really used when it ends
 * (`usage.onEnd`), which also frees the stream slot.
 *
 * @example app.post("/chat/completions", auth, inferenceRequest(...), usageMeter(), limitAdmission(), handler)
 */
export function limitAdmission() {
  return createMiddleware<UsageEnv>(async function limitAdmission(c, next) {
    const { principal, requestKey } = c.var;
    if (hasLimits(principal.limits)) {
      const { body, estimate } = c.var.inference;
      const admission = await limiterFor(c.env, principal.tenantId).admit({
        requestKey,
        estimatedTokens: estimate.total,
        stream: body.stream === true,
        limits: principal.limits,
      });
      if (!admission.ok) {
        throw new ApiError(429, admission.code, admission.message, {
          headers: { "retry-after": String(admission.retryAfterSeconds) },
        });
      }
      c.var.usage.onEnd((tokens) =>
        limiterFor(c.env, principal.tenantId).settle(
          requestKey,
          tokens.promptTokens + tokens.completionTokens,
        ),
      );
    }
    await next();
  });
}
