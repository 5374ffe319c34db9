import type { Principal, Scope } from "./principal.ts";

/** The columns of api_keys joined with tenants that make a Principal. */
export const principalColumns = `
  k.id AS key_id, k.scopes, k.expires_at, k.revoked_at, k.hash,
  t.id AS tenant_id, t.name AS tenant_name, t.status AS tenant_status,
  t.requests_per_minute, t.tokens_per_minute, t.concurrent_streams, t.monthly_token_quota,
  t.max_adapters, t.max_adapter_bytes, t.max_rank, t.allowed_base_models, t.share_prefix_cache`;

export type PrincipalRow = {
  key_id: string;
  scopes: string;
  expires_at: number | null;
  revoked_at: number | null;
  hash: string;
  tenant_id: string;
  tenant_name: string;
  tenant_status: "active" | "suspended";
  requests_per_minute: number | null;
  tokens_per_minute: number | null;
  concurrent_streams: number | null;
  monthly_token_quota: number | null;
  max_adapters: number;
  max_adapter_bytes: number;
  max_rank: number;
  allowed_base_models: string;
  share_prefix_cache: number;
};

export function principalFromRow(row: PrincipalRow): Principal {
  return {
    keyId: row.key_id,
    tenantId: row.tenant_id,
    tenantName: row.tenant_name,
    tenantStatus: row.tenant_status,
    scopes: JSON.parse(row.scopes) as Scope[],
    expiresAt: row.expires_at,
    limits: {
      requestsPerMinute: row.requests_per_minute,
      tokensPerMinute: row.tokens_per_minute,
      concurrentStreams: row.concurrent_streams,
      monthlyTokenQuota: row.monthly_token_quota,
    },
    adapterQuota: {
      maxAdapters: row.max_adapters,
      maxAdapterBytes: row.max_adapter_bytes,
      maxRank: row.max_rank,
    },
    allowedBaseModels: JSON.parse(row.allowed_base_models) as string[],
    sharePrefixCache: row.share_prefix_cache === 1,
  };
}
