import { retryD1 } from "../storage/d1-retry.ts";

/** One request's usage row; token counts are the backend's own (its `usage` object). */
export type UsageRecord = {
  requestId: string;
  tenantId: string;
  keyId: string;
  endpoint: string;
  model: string;
  adapterId: string | null;
  backendId: string | null;
  promptTokens: number;
  completionTokens: number;
  /** HTTP status the client got. */
  status: number;
  outcome: "ok" | "rate_limited" | "backend_error" | "client_disconnect" | "invalid";
  latencyMs: number;
};

/**
 * Writes the row once: request_id is the primary key and a second write for
 * the same request is ignored, so every path that ends a request may call this,
 * and a transient D1 failure is retried without ever counting a request twice.
 */
export async function recordUsage(db: D1Database, r: UsageRecord, now: number): Promise<void> {
  await retryD1(() =>
    db
      .prepare(
        `INSERT OR IGNORE INTO usage (request_id, tenant_id, key_id, endpoint, model, adapter_id, backend_id,
         prompt_tokens, completion_tokens, status, outcome, latency_ms, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .bind(
        r.requestId,
        r.tenantId,
        r.keyId,
        r.endpoint,
        r.model,
        r.adapterId,
        r.backendId,
        r.promptTokens,
        r.completionTokens,
        r.status,
        r.outcome,
        r.latencyMs,
        now,
      )
      .run(),
  );
}
