import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import type { BackendDirectory } from "../routing/backend-directory.ts";
import { parseJsonBody } from "../validation.ts";
import { getBaseModel } from "./base-models.ts";

const registerSchema = z.strictObject({
  id: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, "must be 1-64 letters, digits, dots, dashes or underscores"),
  url: z.url({ protocol: /^https?$/ }),
  base_model: z.string().min(1),
  capacity: z.number().int().positive().default(32),
});

/** /admin/backends: register (or update), list, drain, resume, remove. */
export function backendRoutes(directory: BackendDirectory) {
  const app = new Hono<AppEnv>();

  app.post("/", async (c) => {
    const b = await parseJsonBody(c, registerSchema);
    await getBaseModel(c.env.DB, b.base_model);
    await c.env.DB.prepare(
      `INSERT INTO backends (id, url, base_model, capacity, created_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET url = excluded.url, base_model = excluded.base_model,
         capacity = excluded.capacity, status = 'active', healthy = 1`,
    )
      .bind(b.id, b.url.replace(/\/+$/, ""), b.base_model, b.capacity, Date.now())
      .run();
    directory.invalidate();
    return c.json(await getBackendRow(c.env.DB, b.id), 201);
  });

  app.get("/", async (c) => {
    const { results } = await c.env.DB.prepare("SELECT * FROM backends ORDER BY id").all();
    return c.json({ object: "list", data: results });
  });

  for (const [action, status] of [
    ["drain", "draining"],
    ["resume", "active"],
  ] as const) {
    app.post(`/:id/${action}`, async (c) => {
      const id = c.req.param("id");
      await getBackendRow(c.env.DB, id);
      await c.env.DB.prepare("UPDATE backends SET status = ? WHERE id = ?").bind(status, id).run();
      directory.invalidate();
      return c.json(await getBackendRow(c.env.DB, id));
    });
  }

  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    await getBackendRow(c.env.DB, id);
    await c.env.DB.prepare("DELETE FROM backends WHERE id = ?").bind(id).run();
    directory.invalidate();
    return c.json({ id, object: "backend", deleted: true });
  });

  return app;
}

async function getBackendRow(db: D1Database, id: string): Promise<Record<string, unknown>> {
  const row = await db.prepare("SELECT * FROM backends WHERE id = ?").bind(id).first();
  if (row === null) throw new ApiError(404, "backend_not_found", `No backend ${id}`);
  return row;
}
