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

export type UsageLine = {
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** requests answered with an HTTP status >= 400 */
  errors: number;
};

export type UsageSummary = {
  start: number;
  end: number | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  data: UsageLine[];
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
