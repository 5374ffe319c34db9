-- Usage rows are keyed by an id the gateway makes for each request (`id`), never by the
-- client's `x-request-id`: a reused or foreign client id used to merge, drop or pre-claim
-- rows (INSERT OR IGNORE on a client-chosen key). The client's id stays, as a label.
CREATE TABLE usage_by_gateway_id (
  id TEXT PRIMARY KEY,                     -- made by the gateway: "req_" + random, or "<batch id>-<line>"
  request_id TEXT NOT NULL,                -- the client's x-request-id (or the UUID the gateway chose): a label
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
-- Rows written so far were one per distinct client id: each keeps that id as key and label.
INSERT INTO usage_by_gateway_id
  SELECT request_id, request_id, tenant_id, key_id, endpoint, model, adapter_id, backend_id,
    prompt_tokens, completion_tokens, status, outcome, latency_ms, created_at
  FROM usage;
DROP TABLE usage;
ALTER TABLE usage_by_gateway_id RENAME TO usage;
CREATE INDEX usage_tenant_time ON usage(tenant_id, created_at);
-- A tenant looks its requests up by the id its client sent (GET /v1/usage/requests/:id).
CREATE INDEX usage_tenant_request ON usage(tenant_id, request_id);
