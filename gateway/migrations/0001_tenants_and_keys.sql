-- Tenants and their API keys. Times are unix milliseconds.
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,                     -- "tn_" + random
  name TEXT NOT NULL UNIQUE,               -- slug, also the prefix in "tenant/adapter" model names
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  -- Limits; NULL means unlimited.
  requests_per_minute INTEGER,
  tokens_per_minute INTEGER,
  concurrent_streams INTEGER,
  monthly_token_quota INTEGER,
  -- Adapter quotas.
  max_adapters INTEGER NOT NULL DEFAULT 100,
  max_adapter_bytes INTEGER NOT NULL DEFAULT 104857600,
  max_rank INTEGER NOT NULL DEFAULT 64,
  allowed_base_models TEXT NOT NULL DEFAULT '[]', -- JSON array of base model names
  created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,                     -- "key_" + random; safe to show and log
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  hash TEXT NOT NULL UNIQUE,               -- hex SHA-256 of the full secret key
  prefix TEXT NOT NULL,                    -- first characters of the key, to recognise it in lists
  scopes TEXT NOT NULL,                    -- JSON array: inference, adapters:write, admin
  name TEXT,
  expires_at INTEGER,
  revoked_at INTEGER,
  last_used_at INTEGER,
  created_at INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);
