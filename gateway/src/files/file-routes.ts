import { Hono } from "hono";
import type { KeyResolver } from "../auth/key-resolver.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { createFile, type FileRow, fileObjectKey, fileView, findTenantFile } from "./file-store.ts";

/** Largest batch input file accepted. */
export const maxFileBytes = 50 * 1024 * 1024;

/** /v1/files: OpenAI's Files API for batch input (upload) and output (download). */
export function fileRoutes(keys: KeyResolver, now: () => number) {
  const app = new Hono<AppEnv>();
  app.use(apiKeyAuth(keys, "inference", now));

  app.post("/", async (c) => {
    if (Number(c.req.header("content-length") ?? 0) > maxFileBytes + 64 * 1024) {
      throw new ApiError(413, "file_too_large", `Files are limited to ${maxFileBytes} bytes`);
    }
    let form: FormData;
    try {
      form = await c.req.formData();
    } catch {
      throw new ApiError(
        415,
        "invalid_upload",
        "Send the file as multipart/form-data with `file` and `purpose`",
      );
    }
    const purpose = form.get("purpose");
    const file = form.get("file");
    if (purpose !== "batch")
      throw new ApiError(400, "invalid_request", 'purpose must be "batch"', { param: "purpose" });
    if (file === null || typeof file === "string")
      throw new ApiError(400, "invalid_request", "file is missing", { param: "file" });
    if (file.size > maxFileBytes)
      throw new ApiError(413, "file_too_large", `Files are limited to ${maxFileBytes} bytes`);
    const row = await createFile(
      c.env,
      {
        id: newId("file-"),
        tenantId: c.get("principal").tenantId,
        purpose,
        filename: file.name.slice(0, 200),
        bytes: new Uint8Array(await file.arrayBuffer()),
      },
      now(),
    );
    return c.json(fileView(row));
  });

  app.get("/", async (c) => {
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM files WHERE tenant_id = ? ORDER BY created_at DESC",
    )
      .bind(c.get("principal").tenantId)
      .all<FileRow>();
    return c.json({ object: "list", data: results.map(fileView) });
  });

  app.get("/:id", async (c) =>
    c.json(
      fileView(await findTenantFile(c.env.DB, c.get("principal").tenantId, c.req.param("id"))),
    ),
  );

  app.get("/:id/content", async (c) => {
    const row = await findTenantFile(c.env.DB, c.get("principal").tenantId, c.req.param("id"));
    const object = await c.env.FILES.get(fileObjectKey(row.id));
    if (object === null) throw new ApiError(404, "file_not_found", `File ${row.id} has no content`);
    return new Response(object.body, { headers: { "content-type": "text/plain; charset=utf-8" } });
  });

  app.delete("/:id", async (c) => {
    const row = await findTenantFile(c.env.DB, c.get("principal").tenantId, c.req.param("id"));
    await c.env.DB.prepare("DELETE FROM files WHERE id = ?").bind(row.id).run();
    await c.env.FILES.delete(fileObjectKey(row.id));
    return c.json({ id: row.id, object: "file", deleted: true });
  });

  return app;
}
