import { ApiError } from "../errors.ts";

export type FileRow = {
  id: string;
  tenant_id: string;
  purpose: string;
  filename: string;
  bytes: number;
  created_at: number;
};

/** OpenAI's file object. */
export function fileView(row: FileRow) {
  return {
    id: row.id,
    object: "file",
    bytes: row.bytes,
    created_at: Math.floor(row.created_at / 1000),
    filename: row.filename,
    purpose: row.purpose,
  };
}

export function fileObjectKey(id: string): string {
  return `files/${id}`;
}

/** A tenant's file; another tenant's is the same 404 as none. */
export async function findTenantFile(
  db: D1Database,
  tenantId: string,
  id: string,
): Promise<FileRow> {
  const row = await db
    .prepare("SELECT * FROM files WHERE id = ? AND tenant_id = ?")
    .bind(id, tenantId)
    .first<FileRow>();
  if (row === null)
    throw new ApiError(404, "file_not_found", `No such file: ${id}`, { param: "file_id" });
  return row;
}

/** Stores bytes in R2 first, then the row, so a listed file always has its bytes. */
export async function createFile(
  env: { DB: D1Database; FILES: R2Bucket },
  file: {
    id: string;
    tenantId: string;
    purpose: string;
    filename: string;
    bytes: Uint8Array | string;
  },
  now: number,
): Promise<FileRow> {
  const size =
    typeof file.bytes === "string"
      ? new TextEncoder().encode(file.bytes).byteLength
      : file.bytes.byteLength;
  await env.FILES.put(fileObjectKey(file.id), file.bytes);
  const row = {
    id: file.id,
    tenant_id: file.tenantId,
    purpose: file.purpose,
    filename: file.filename,
    bytes: size,
    created_at: now,
  };
  await env.DB.prepare(
    "INSERT INTO files (id, tenant_id, purpose, filename, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)",
  )
    .bind(row.id, row.tenant_id, row.purpose, row.filename, row.bytes, row.created_at)
    .run();
  return row;
}
