-- The version of each backend id's secret (gateway/src/auth/backend-credential.ts derives
-- the secret from BACKEND_SECRET, the id and this version; nothing secret is stored).
-- Rotating a backend's secret bumps the version. Rows outlive their backend: removing a
-- backend bumps its version too, so registering the id again never revives an old secret.
CREATE TABLE backend_credentials (
  backend_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1)
);
INSERT INTO backend_credentials (backend_id) SELECT id FROM backends;
