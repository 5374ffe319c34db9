import { ApiError } from "../errors.ts";

export type BatchRow = {
  id: string;
  tenant_id: string;
  endpoint: string;
  input_file_id: string;
  output_file_id: string | null;
  error_file_id: string | null;
  status: "in_progress" | "completed" | "failed" | "cancelling" | "cancelled";
  total: number;
  completed: number;
  failed: number;
  metadata: string | null;
  created_at: number;
  finished_at: number | null;
};

/** OpenAI's batch object. */
export function batchView(row: BatchRow) {
  const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000));
  return {
    id: row.id,
    object: "batch",
    endpoint: row.endpoint,
    errors: null,
    input_file_id: row.input_file_id,
    completion_window: "24h",
    status: row.status,
    output_file_id: row.output_file_id,
    error_file_id: row.error_file_id,
    created_at: seconds(row.created_at),
    in_progress_at: seconds(row.created_at),
    completed_at: row.status === "completed" ? seconds(row.finished_at) : null,
    cancelled_at: row.status === "cancelled" ? seconds(row.finished_at) : null,
    failed_at: row.status === "failed" ? seconds(row.finished_at) : null,
    request_counts: { total: row.total, completed: row.completed, failed: row.failed },
    metadata: row.metadata === null ? null : (JSON.parse(row.metadata) as Record<string, string>),
  };
}

export async function findTenantBatch(
  db: D1Database,
  tenantId: string,
  id: string,
): Promise<BatchRow> {
  const row = await db
    .prepare("SELECT * FROM batches WHERE id = ? AND tenant_id = ?")
    .bind(id, tenantId)
    .first<BatchRow>();
  if (row === null) throw new ApiError(404, "batch_not_found", `No such batch: ${id}`);
  return row;
}
