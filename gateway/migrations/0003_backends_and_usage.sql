-- GPU backends the gateway forwards to.
CREATE TABLE backends (
  id TEXT PRIMARY KEY,                     -- chosen by the operator, e.g. "gpu-0"
  url TEXT NOT NULL,                       -- base URL; the gateway calls {url}/v1/...
  base_model TEXT NOT NULL REFERENCES base_models(name),
  capacity INTEGER NOT NULL,               -- requests it serves at once at full speed
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining')),
  healthy INTEGER NOT NULL DEFAULT 1,
  load INTEGER NOT NULL DEFAULT 0,         -- running + waiting requests at the last health check
  last_checked_at INTEGER,
  last_error TEXT,
  created_at INTEGER NOT NULL
);

-- One row per request, written exactly once (request_id is the key).
CREATE TABLE usage (
  request_id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  endpoint TEXT NOT NULL,                  -- e.g. "/v1/chat/completions"
  model TEXT NOT NULL,                     -- as the client named it
  adapter_id TEXT,
  backend_id TEXT,
  prompt_tokens INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  status INTEGER NOT NULL,                 -- HTTP status the client got
  outcome TEXT NOT NULL,                   -- ok | rate_limited | backend_error | client_disconnect | invalid
  latency_ms INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX usage_tenant_time ON usage(tenant_id, created_at);
