import { Hono } from "hono";
import { z } from "zod";
import { backendCredential, backendIdPattern } from "../auth/backend-credential.ts";
import type { AppEnv, Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { requireSecrets } from "../middleware/require-secrets.ts";
import type { BackendDirectory } from "../routing/backend-directory.ts";
import { parseJsonBody } from "../validation.ts";
import { getBaseModel } from "./base-models.ts";

const registerSchema = z.strictObject({
  id: z
    .string()
    .regex(backendIdPattern, "must be 1-64 letters, digits, dots, dashes or underscores"),
  url: z.url({ protocol: /^https?$/ }),
  base_model: z.string().min(1),
  capacity: z.number().int().positive().default(32),
});

/**
 * /admin/backends: register (or update), list, drain, resume, rotate the secret, remove.
 * Registering and rotating answer the backend's secret (`backend_secret`, for its
 * `--backend-secret`); the list never shows it.
 */
export function backendRoutes(directory: BackendDirectory) {
  const app = new Hono<AppEnv>();

  app.post("/", requireSecrets(), async (c) => {
    const b = await parseJsonBody(c, registerSchema);
    await getBaseModel(c.env.DB, b.base_model);
    await c.env.DB.batch([
      c.env.DB.prepare(
        `INSERT INTO backends (id, url, base_model, capacity, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, base_model = excluded.base_model,
           capacity = excluded.capacity, status = 'active', healthy = 1`,
      ).bind(b.id, b.url.replace(/\/+$/, ""), b.base_model, b.capacity, Date.now()),
      c.env.DB.prepare(
        "INSERT INTO backend_credentials (backend_id) VALUES (?) ON CONFLICT DO NOTHING",
      ).bind(b.id),
    ]);
    directory.invalidate();
    return c.json(await withSecret(c.env, await getBackendRow(c.env.DB, b.id)), 201);
  });

  app.get("/", async (c) => {
    const { results } = await c.env.DB.prepare(`${selectBackends} ORDER BY b.id`).all();
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

  // The old secret stops working at once, for calls to the backend and its downloads:
  // drain the backend first, restart it with the new secret, then resume it.
  app.post("/:id/rotate-secret", requireSecrets(), async (c) => {
    const id = c.req.param("id");
    await getBackendRow(c.env.DB, id);
    await c.env.DB.prepare(
      "UPDATE backend_credentials SET version = version + 1 WHERE backend_id = ?",
    )
      .bind(id)
      .run();
    directory.invalidate();
    return c.json(await withSecret(c.env, await getBackendRow(c.env.DB, id)));
  });

  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    await getBackendRow(c.env.DB, id);
    await c.env.DB.batch([
      c.env.DB.prepare("DELETE FROM backends WHERE id = ?").bind(id),
      c.env.DB.prepare(
        "UPDATE backend_credentials SET version = version + 1 WHERE backend_id = ?",
      ).bind(id),
    ]);
    directory.invalidate();
    return c.json({ id, object: "backend", deleted: true });
  });

  return app;
}

const selectBackends =
  "SELECT b.*, c.version AS secret_version FROM backends b JOIN backend_credentials c ON c.backend_id = b.id";

type BackendRow = Record<string, unknown> & { id: string; secret_version: number };

async function getBackendRow(db: D1Database, id: string): Promise<BackendRow> {
  const row = await db.prepare(`${selectBackends} WHERE b.id = ?`).bind(id).first<BackendRow>();
  if (row === null) throw new ApiError(404, "backend_not_found", `No backend ${id}`);
  return row;
}

async function withSecret(env: Env, row: BackendRow) {
  return {
    ...row,
    backend_secret: await backendCredential(env.BACKEND_SECRET, row.id, row.secret_version),
  };
}
