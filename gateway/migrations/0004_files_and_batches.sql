-- OpenAI Files + Batches: file bytes live in R2 under files/<id>.
CREATE TABLE files (
  id TEXT PRIMARY KEY,                     -- "file-" + random
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  purpose TEXT NOT NULL,
  filename TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX files_tenant ON files(tenant_id);

CREATE TABLE batches (
  id TEXT PRIMARY KEY,                     -- "batch_" + random
  tenant_id TEXT NOT NULL REFERENCES tenants(id),
  endpoint TEXT NOT NULL,
  input_file_id TEXT NOT NULL REFERENCES files(id),
  output_file_id TEXT,
  error_file_id TEXT,
  status TEXT NOT NULL,                    -- validating | in_progress | completed | failed | cancelling | cancelled
  total INTEGER NOT NULL DEFAULT 0,
  completed INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  completed_at INTEGER
);
CREATE INDEX batches_tenant ON batches(tenant_id);
