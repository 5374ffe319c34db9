import { Hono } from "hono";
import type { KeyResolver } from "../auth/key-resolver.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { AppEnv } from "../env.ts";
import type { AdapterResolver } from "./adapter-resolver.ts";
import {
  type AdapterRow,
  adapterObjectKey,
  adapterView,
  findTenantAdapter,
} from "./adapter-store.ts";
import { adapterFiles } from "./signed-url.ts";
import { storeAdapter } from "./upload.ts";
import { readUploadForm } from "./upload-form.ts";

/** /v1/adapters: a tenant's own adapters; every lookup is scoped to the caller's tenant. */
export function adapterRoutes(keys: KeyResolver, adapters: AdapterResolver, now: () => number) {
  const app = new Hono<AppEnv>();
  const read = apiKeyAuth(keys, "inference", now);
  const write = apiKeyAuth(keys, "adapters:write", now);

  app.post("/", write, async (c) => {
    const principal = c.get("principal");
    const form = await readUploadForm(c.req.raw, principal.adapterQuota.maxAdapterBytes);
    const row = await storeAdapter(c.env, principal, form, now());
    return c.json(adapterView(row), 201);
  });

  app.get("/", read, async (c) => {
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM adapters WHERE tenant_id = ? ORDER BY created_at",
    )
      .bind(c.get("principal").tenantId)
      .all<AdapterRow>();
    return c.json({ object: "list", data: results.map(adapterView) });
  });

  app.get("/:name", read, async (c) => {
    return c.json(
      adapterView(
        await findTenantAdapter(c.env.DB, c.get("principal").tenantId, c.req.param("name")),
      ),
    );
  });

  app.delete("/:name", write, async (c) => {
    const { tenantId } = c.get("principal");
    const row = await findTenantAdapter(c.env.DB, tenantId, c.req.param("name"));
    await c.env.DB.prepare("DELETE FROM adapters WHERE id = ?").bind(row.id).run();
    if (row.upload_id !== null) {
      await c.env.FILES.resumeMultipartUpload(
        adapterObjectKey(row.id, "adapter_model.safetensors"),
        row.upload_id,
      ).abort();
    }
    await c.env.FILES.delete(adapterFiles.map((f) => adapterObjectKey(row.id, f)));
    await adapters.forget(c.env, tenantId, row.name);
    return c.json({ object: "adapter", id: row.id, name: row.name, deleted: true });
  });

  return app;
}
