import { createMiddleware } from "hono/factory";
import type { TenantLimits } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import type { UsageEnv } from "../usage/usage-meter.ts";
import type { SliceLimiter } from "./slice-limiter.ts";

/** A tenant with no limit set needs no admission: its requests skip the Durable Object round trip. */
function hasLimits(limits: TenantLimits): boolean {
  return Object.values(limits).some((limit) => limit !== null);
}

/** The tenant's TenantLimiter instance: one per tenant id, wherever the request lands. */
function limiterFor(env: Env, tenantId: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(tenantId));
}

/**
 * Whether a request needs the tenant's Durable Object itself, not a slice: a stream under a
 * concurrent-stream cap (slots are held across isolates until the stream ends) and any
 * request of a tenant with a monthly quota (the month's count stays exact, settled per request).
 */
function needsExactPath(limits: TenantLimits, stream: boolean): boolean {
  return limits.monthlyTokenQuota !== null || (stream && limits.concurrentStreams !== null);
}

function refused(admission: { code: string; message: string; retryAfterSeconds: number }) {
  return new ApiError(429, admission.code, admission.message, {
    headers: { "retry-after": String(admission.retryAfterSeconds) },
  });
}

/**
 * Admits a metered inference request (after `usageMeter`) against its tenant's limits, or
 * ends it here with the 429 the client gets, with Retry-After in seconds:
 * - requests and tokens per minute alone: from a slice this isolate leased from the tenant's
 *   TenantLimiter (`SliceLimiter`), with no Durable Object round trip on the warm path; the
 *   tokens the request did not use go back to the slice when it ends;
 * - a stream under a concurrent-stream cap, or a tenant with a monthly quota: the
 *   TenantLimiter reserves the estimated tokens (and a stream slot) for this request and
 *   settles with the tokens it really used when it ends (`usage.onEnd`), freeing the slot.
 *
 * @example app.post("/chat/completions", auth, inferenceRequest(...), usageMeter(), limitAdmission(slices), handler)
 */
export function limitAdmission(slices: SliceLimiter) {
  return createMiddleware<UsageEnv>(async function limitAdmission(c, next) {
    const principal = c.get("principal");
    const requestKey = c.get("requestKey");
    const { limits, tenantId } = principal;
    if (!hasLimits(limits)) return next();
    const { body, estimate } = c.get("inference");
    const stream = body.stream === true;
    if (!needsExactPath(limits, stream)) {
      if (limits.requestsPerMinute === null && limits.tokensPerMinute === null) return next();
      const admission = await slices.admit(c.env, tenantId, limits, estimate.total, (work) =>
        c.executionCtx.waitUntil(work),
      );
      if (!admission.ok) throw refused(admission);
      c.get("usage").onEnd((tokens) =>
        slices.settle(
          tenantId,
          admission.minute,
          estimate.total,
          tokens.promptTokens + tokens.completionTokens,
        ),
      );
      return next();
    }
    const admission = await limiterFor(c.env, tenantId).admit({
      requestKey,
      estimatedTokens: estimate.total,
      stream,
      limits,
    });
    if (!admission.ok) throw refused(admission);
    c.get("usage").onEnd((tokens) =>
      limiterFor(c.env, tenantId).settle(requestKey, tokens.promptTokens + tokens.completionTokens),
    );
    await next();
  });
}
