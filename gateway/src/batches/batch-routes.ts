import { inferenceEndpoints } from "@lorafleet/api";
import { Hono } from "hono";
import { z } from "zod";
import type { GatewayState } from "../app.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { fileObjectKey, findTenantFile } from "../files/file-store.ts";
import { newId } from "../ids.ts";
import type { ModelTarget } from "../openai/resolve-model.ts";
import { cacheSalt } from "../proxy/cache-salt.ts";
import { parseJsonBody } from "../validation.ts";
import { parseBatchInput } from "./batch-input.ts";
import { type BatchRow, batchView, findTenantBatch } from "./batch-store.ts";

const createSchema = z.strictObject({
  input_file_id: z.string().min(1),
  endpoint: z.enum(inferenceEndpoints),
  completion_window: z.literal("24h"),
  metadata: z.record(z.string().max(64), z.string().max(512)).optional(),
});

/** /v1/batches: OpenAI's Batch API over JSONL files in R2, run by a BatchRunner per batch. */
export function batchRoutes(state: GatewayState) {
  const app = new Hono<AppEnv>();
  app.use(apiKeyAuth(state.keys, "inference", state.now));

  app.post("/", async (c) => {
    const principal = c.get("principal");
    const input = await parseJsonBody(c, createSchema);
    const file = await findTenantFile(c.env.DB, principal.tenantId, input.input_file_id);
    if (file.purpose !== "batch") {
      throw new ApiError(
        400,
        "invalid_request",
        `File ${file.id} has purpose ${file.purpose}, not batch`,
        { param: "input_file_id" },
      );
    }
    const object = await c.env.FILES.get(fileObjectKey(file.id));
    if (object === null)
      throw new ApiError(404, "file_not_found", `File ${file.id} has no content`);
    const lines = parseBatchInput(await object.text(), input.endpoint);
    // Every model is resolved now, so a batch naming a model the tenant can't use fails at once.
    const targets: Record<string, ModelTarget> = {};
    for (const model of new Set(lines.map((l) => l.request.model))) {
      targets[model] = await state.models.resolve(c.env, principal, model);
    }
    const id = newId("batch_");
    await c.env.DB.prepare(
      "INSERT INTO batches (id, tenant_id, endpoint, input_file_id, status, total, metadata, created_at) VALUES (?, ?, ?, ?, 'in_progress', ?, ?, ?)",
    )
      .bind(
        id,
        principal.tenantId,
        input.endpoint,
        file.id,
        lines.length,
        input.metadata ? JSON.stringify(input.metadata) : null,
        state.now(),
      )
      .run();
    await c.env.BATCHES.get(c.env.BATCHES.idFromName(id)).start({
      batchId: id,
      tenantId: principal.tenantId,
      keyId: principal.keyId,
      cacheSalt: await cacheSalt(c.env.BACKEND_SECRET, principal),
      origin: c.env.PUBLIC_URL || new URL(c.req.url).origin,
      endpoint: input.endpoint,
      inputFileId: file.id,
      monthlyTokenQuota: principal.limits.monthlyTokenQuota,
      targets,
    });
    return c.json(batchView(await findTenantBatch(c.env.DB, principal.tenantId, id)));
  });

  app.get("/", async (c) => {
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM batches WHERE tenant_id = ? ORDER BY created_at DESC LIMIT 100",
    )
      .bind(c.get("principal").tenantId)
      .all<BatchRow>();
    return c.json({ object: "list", data: results.map(batchView), has_more: false });
  });

  app.get("/:id", async (c) =>
    c.json(
      batchView(await findTenantBatch(c.env.DB, c.get("principal").tenantId, c.req.param("id"))),
    ),
  );

  app.post("/:id/cancel", async (c) => {
    const { tenantId } = c.get("principal");
    const row = await findTenantBatch(c.env.DB, tenantId, c.req.param("id"));
    if (row.status !== "in_progress") {
      throw new ApiError(409, "batch_not_cancellable", `Batch ${row.id} is ${row.status}`);
    }
    await c.env.DB.prepare(
      "UPDATE batches SET status = 'cancelling' WHERE id = ? AND status = 'in_progress'",
    )
      .bind(row.id)
      .run();
    return c.json(batchView(await findTenantBatch(c.env.DB, tenantId, row.id)));
  });

  return app;
}
