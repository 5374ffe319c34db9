import type { Principal, TenantLimits } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";

/** The tenant's TenantLimiter instance: one per tenant id, wherever the request lands. */
function limiterFor(env: Env, tenantId: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(tenantId));
}

/** A tenant with no limit set needs no admission: its requests skip the Durable Object round trip. */
export function hasLimits(limits: TenantLimits): boolean {
  return Object.values(limits).some((limit) => limit !== null);
}

/**
 * Reserves a request's estimated tokens (and a stream slot) or throws the 429
 * the client gets, with Retry-After in seconds.
 */
export async function admitRequest(
  env: Env,
  principal: Principal,
  request: { requestId: string; estimatedTokens: number; stream: boolean },
): Promise<void> {
  const result = await limiterFor(env, principal.tenantId).admit({
    ...request,
    limits: principal.limits,
  });
  if (!result.ok) {
    throw new ApiError(429, result.code, result.message, {
      headers: { "retry-after": String(result.retryAfterSeconds) },
    });
  }
}

/** Replaces the reservation by the real token count and frees the stream slot. */
export async function settleRequest(
  env: Env,
  tenantId: string,
  requestId: string,
  actualTokens: number,
): Promise<void> {
  await limiterFor(env, tenantId).settle(requestId, actualTokens);
}
