export const scopes = ["inference", "adapters:write", "admin"] as const;
export type Scope = (typeof scopes)[number];

/** Limits enforced by the tenant's Durable Object; null means unlimited. */
export type TenantLimits = {
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  concurrentStreams: number | null;
  monthlyTokenQuota: number | null;
};

/** Adapter quotas checked at upload. */
export type AdapterQuota = { maxAdapters: number; maxAdapterBytes: number; maxRank: number };

/**
 * Who is calling: what an API key resolves to. This whole record is what the
 * key caches (isolate LRU, KV) hold, so it carries no secret, only the key's id.
 */
export type Principal = {
  keyId: string;
  tenantId: string;
  tenantName: string;
  tenantStatus: "active" | "suspended";
  scopes: Scope[];
  /** Unix ms; null = never expires. */
  expiresAt: number | null;
  limits: TenantLimits;
  adapterQuota: AdapterQuota;
  allowedBaseModels: string[];
  /** One prefix cache across the tenant's keys, instead of one per key (proxy/cache-salt.ts). */
  sharePrefixCache: boolean;
};
