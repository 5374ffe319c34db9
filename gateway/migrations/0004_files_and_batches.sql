-- OpenAI Files + Batches: file bytes live in R2 under files/<id>.
CREATE TABLE files (
  id TEXT PRIMARY KEY,                     -- "file-" + random
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  purpose TEXT NOT NULL,                   -- batch | batch_output
  filename TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX files_tenant ON files(tenant_id);

CREATE TABLE batches (
  id TEXT PRIMARY KEY,                     -- "batch_" + random
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  endpoint TEXT NOT NULL,                  -- /v1/chat/completions | /v1/completions
  input_file_id TEXT NOT NULL REFERENCES files(id),
  output_file_id TEXT,
  error_file_id TEXT,
  status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed', 'cancelling', 'cancelled')),
  total INTEGER NOT NULL,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  metadata TEXT,                           -- JSON object or NULL
  created_at INTEGER NOT NULL,
  finished_at INTEGER                      -- completed, failed or cancelled
);
CREATE INDEX batches_tenant ON batches(tenant_id);
