import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import type { Principal } from "./principal.ts";

type KeyDetails = {
  prefix: string;
  name: string | null;
  created_at: number;
  last_used_at: number | null;
};

/**
 * GET /v1/me: who the calling key is. Tenant, key and limits come from the
 * Principal the request was authorised with (so they are the limits enforced
 * on it, with the caches' bound); prefix, name and times from D1.
 *
 * @example c.json(await describeCaller(c.env, c.get("principal")))
 */
export async function describeCaller(env: Env, principal: Principal) {
  const key = await env.DB.prepare(
    "SELECT prefix, name, created_at, last_used_at FROM api_keys WHERE id = ?",
  )
    .bind(principal.keyId)
    .first<KeyDetails>();
  if (key === null) throw new ApiError(401, "invalid_api_key", "Incorrect API key provided");
  return {
    object: "me",
    tenant: { id: principal.tenantId, name: principal.tenantName },
    key: {
      id: principal.keyId,
      ...key,
      scopes: principal.scopes,
      expires_at: principal.expiresAt,
    },
    limits: {
      requests_per_minute: principal.limits.requestsPerMinute,
      tokens_per_minute: principal.limits.tokensPerMinute,
      concurrent_streams: principal.limits.concurrentStreams,
      monthly_token_quota: principal.limits.monthlyTokenQuota,
      max_adapters: principal.adapterQuota.maxAdapters,
      max_adapter_bytes: principal.adapterQuota.maxAdapterBytes,
      max_rank: principal.adapterQuota.maxRank,
      allowed_base_models: principal.allowedBaseModels,
    },
  };
}
