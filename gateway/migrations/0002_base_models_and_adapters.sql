-- Base models the backends serve, with the dimensions adapter uploads are checked against.
CREATE TABLE base_models (
  name TEXT PRIMARY KEY,                   -- as in the OpenAI `model` field and adapter_config.json
  hidden_size INTEGER NOT NULL,
  intermediate_size INTEGER NOT NULL,
  num_hidden_layers INTEGER NOT NULL,
  num_attention_heads INTEGER NOT NULL,
  num_key_value_heads INTEGER NOT NULL,
  head_dim INTEGER NOT NULL,
  max_lora_rank INTEGER NOT NULL,          -- the largest rank the backends accept
  created_at INTEGER NOT NULL
);

CREATE TABLE adapters (
  id TEXT PRIMARY KEY,                     -- "ad_" + random; what backends key their caches on
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  base_model TEXT NOT NULL REFERENCES base_models(name),
  status TEXT NOT NULL CHECK (status IN ('uploaded', 'validating', 'ready', 'failed')),
  failure_reason TEXT,
  rank INTEGER NOT NULL,
  lora_alpha REAL NOT NULL,
  target_modules TEXT NOT NULL,            -- JSON array
  config_bytes INTEGER NOT NULL,
  weights_bytes INTEGER NOT NULL,
  weights_sha256 TEXT NOT NULL,            -- hex; backends verify it after download
  config_sha256 TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (tenant_id, name)
);
