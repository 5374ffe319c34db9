// The gateway's JSON shapes, as gateway/README.md documents them. Times are unix ms.

export type Scope = "inference" | "adapters:write" | "admin";

export type Adapter = {
  id: string;
  name: string;
  base_model: string;
  status: "uploaded" | "validating" | "ready" | "failed";
  failure_reason: string | null;
  rank: number;
  lora_alpha: number;
  target_modules: string[];
  /** config + weights, bytes */
  bytes: number;
  sha256: string;
  created_at: number;
};

export type Model = { id: string; owned_by: string; root: string; parent: string | null };

/** What `group_by` may name. */
export type UsageGroup = "day" | "model" | "adapter";

/** Nearest-rank percentiles of the gateway's latency_ms (arrival to last byte) over `ok` requests; null when none. */
export type LatencyPercentiles = { p50: number | null; p90: number | null; p99: number | null };

type UsageCounts = {
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** requests answered with an HTTP status >= 400, or whose stream the backend ended with an error */
  errors: number;
  latency_ms: LatencyPercentiles;
};

/** A line of GET /v1/usage?group_by=...: the key of each group asked for, then its counts. */
export type GroupedUsageLine = UsageCounts & {
  /** YYYY-MM-DD (UTC) */
  day?: string;
  /** as the client named it */
  model?: string;
  /** null for base-model requests */
  adapter_id?: string | null;
  /** the adapter's name; null for base-model requests or a deleted adapter */
  adapter?: string | null;
};

/** GET /v1/usage?group_by=... (and /admin/usage): totals of the range and a line per group. */
export type GroupedUsage = UsageCounts & {
  start: number;
  end: number | null;
  group_by: UsageGroup[];
  data: GroupedUsageLine[];
};

export type Tenant = {
  id: string;
  name: string;
  status: "active" | "suspended";
  requests_per_minute: number | null;
  tokens_per_minute: number | null;
  concurrent_streams: number | null;
  monthly_token_quota: number | null;
  max_adapters: number;
  max_adapter_bytes: number;
  max_rank: number;
  allowed_base_models: string[];
  created_at: number;
};

export type TenantLimits = Pick<
  Tenant,
  | "requests_per_minute"
  | "tokens_per_minute"
  | "concurrent_streams"
  | "monthly_token_quota"
  | "max_adapters"
  | "max_adapter_bytes"
  | "max_rank"
>;

export type ApiKey = {
  id: string;
  tenant_id: string;
  /** the first characters of the secret, to recognise it */
  prefix: string;
  scopes: Scope[];
  name: string | null;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
};

/** The answer to issuing a key: the only time `key` (the secret) is shown. */
export type IssuedKey = ApiKey & { key: string };

export type Backend = {
  id: string;
  url: string;
  base_model: string;
  capacity: number;
  status: "active" | "draining";
  healthy: number;
  /** running + waiting requests at the last health check */
  load: number;
  last_checked_at: number | null;
  last_error: string | null;
};

export type List<T> = { object: "list"; data: T[] };

/** GET /v1/me: who a tenant key is, and the limits enforced on it. */
export type Me = {
  tenant: { id: string; name: string };
  key: Pick<
    ApiKey,
    "id" | "prefix" | "name" | "scopes" | "expires_at" | "created_at" | "last_used_at"
  >;
  limits: TenantLimits & { allowed_base_models: string[] };
};
