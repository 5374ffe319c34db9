import { retryD1 } from "../storage/d1-retry.ts";

/** One request's usage row; token counts are the backend's own (its `usage` object). */
export type UsageRecord = {
  /** The gateway's own id of the request (`requestKey`): the row's key. */
  requestKey: string;
  /** The client's `x-request-id` (or the UUID the gateway chose): a label, not unique. */
  requestId: string;
  tenantId: string;
  keyId: string;
  endpoint: string;
  model: string;
  adapterId: string | null;
  backendId: string | null;
  promptTokens: number;
  completionTokens: number;
  /** Of `promptTokens`, those the backend found in its prefix cache. */
  cachedTokens: number;
  /** HTTP status the client got. */
  status: number;
  outcome: "ok" | "rate_limited" | "backend_error" | "client_disconnect" | "invalid";
  latencyMs: number;
};

/** A usage row on its way to D1 (in a Queue message): the record and when it ended. */
export type UsageRow = { record: UsageRecord; createdAt: number };

const usageColumns = `id, request_id, tenant_id, key_id, endpoint, model, adapter_id, backend_id,
  prompt_tokens, completion_tokens, cached_tokens, status, outcome, latency_ms, created_at`;
const columnIndexes = usageColumns.split(",").map((_, i) => i);

/** A row as usageInsertMany's JSON carries it: the columns in usageColumns' order. */
function usageValues(r: UsageRecord, createdAt: number) {
  return [
    r.requestKey,
    r.requestId,
    r.tenantId,
    r.keyId,
    r.endpoint,
    r.model,
    r.adapterId,
    r.backendId,
    r.promptTokens,
    r.completionTokens,
    r.cachedTokens,
    r.status,
    r.outcome,
    r.latencyMs,
    createdAt,
  ];
}

/**
 * The row's insert: the gateway's own request key is the primary key and a second write
 * for the same request is ignored, so a retried write, a redelivered Queue message or a
 * batch line run again never counts a request twice. The client's id is only a label:
 * requests that reuse one each get their own row.
 */
export function usageInsert(
  db: D1Database,
  r: UsageRecord,
  createdAt: number,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT OR IGNORE INTO usage (${usageColumns}) VALUES (${columnIndexes.map(() => "?").join(", ")})`,
    )
    .bind(...usageValues(r, createdAt));
}

/**
 * Many rows' insert as ONE statement (the rows travel as one JSON parameter, unpacked by
 * SQLite's json_each), ignoring rows already written as usageInsert does. A statement per
 * row cost the D1 of the local runtime ~0.12 ms a row, in the process that serves
 * requests: the usage consumer's batch of a second at 500 req/s stalled it ~70 ms.
 */
export function usageInsertMany(db: D1Database, rows: UsageRow[]): D1PreparedStatement {
  const values = columnIndexes.map((i) => `value ->> ${i}`).join(", ");
  return db
    .prepare(`INSERT OR IGNORE INTO usage (${usageColumns}) SELECT ${values} FROM json_each(?)`)
    .bind(JSON.stringify(rows.map((r) => usageValues(r.record, r.createdAt))));
}

/** Writes one row now, retrying transient D1 failures (batch lines; the Queue's fallback). */
export async function recordUsage(db: D1Database, r: UsageRecord, now: number): Promise<void> {
  await retryD1(() => usageInsert(db, r, now).run());
}
