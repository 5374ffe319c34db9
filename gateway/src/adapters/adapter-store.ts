import { ApiError } from "../errors.ts";

export type AdapterRow = {
  id: string;
  tenant_id: string;
  name: string;
  base_model: string;
  status: "uploaded" | "validating" | "ready" | "failed";
  failure_reason: string | null;
  rank: number;
  lora_alpha: number;
  target_modules: string;
  config_bytes: number;
  weights_bytes: number;
  weights_sha256: string;
  config_sha256: string;
  upload_id: string | null;
  created_at: number;
};

/** The tenant-facing shape of an adapter. */
export function adapterView(row: AdapterRow) {
  return {
    object: "adapter",
    id: row.id,
    name: row.name,
    base_model: row.base_model,
    status: row.status,
    failure_reason: row.failure_reason,
    rank: row.rank,
    lora_alpha: row.lora_alpha,
    target_modules: JSON.parse(row.target_modules) as string[],
    bytes: row.config_bytes + row.weights_bytes,
    sha256: row.weights_sha256,
    created_at: row.created_at,
  };
}

/** R2 key of one file of an adapter. */
export function adapterObjectKey(adapterId: string, file: string): string {
  return `adapters/${adapterId}/${file}`;
}

/**
 * A tenant's adapter by name. Another tenant's adapter of that name is
 * invisible: the same 404 as a name nobody uses.
 */
export async function findTenantAdapter(
  db: D1Database,
  tenantId: string,
  name: string,
): Promise<AdapterRow> {
  const row = await db
    .prepare("SELECT * FROM adapters WHERE tenant_id = ? AND name = ?")
    .bind(tenantId, name)
    .first<AdapterRow>();
  if (row === null)
    throw new ApiError(404, "adapter_not_found", `The adapter \`${name}\` does not exist`);
  return row;
}
