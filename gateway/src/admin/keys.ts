import { Hono } from "hono";
import { z } from "zod";
import { generateApiKey } from "../auth/api-key.ts";
import { type KeyResolver, keyCacheKey } from "../auth/key-resolver.ts";
import { scopes } from "../auth/principal.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { parseJsonBody } from "../validation.ts";
import { getTenant } from "./tenants.ts";

const issueSchema = z.strictObject({
  scopes: z.array(z.enum(scopes)).min(1).default(["inference"]),
  name: z.string().max(100).optional(),
  /** Unix ms. */
  expires_at: z.number().int().positive().optional(),
});

type KeyRow = {
  id: string;
  hash?: string;
  tenant_id: string;
  prefix: string;
  scopes: string;
  name: string | null;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
};

/** A key as the admin API shows it: never its hash, never its secret. */
function keyView(row: KeyRow) {
  const { hash: _hash, ...shown } = row;
  return { object: "api_key", ...shown, scopes: JSON.parse(row.scopes) as string[] };
}

/** /admin/tenants/:tenant/keys and /admin/keys/:id/revoke. */
export function keyRoutes(resolver: KeyResolver) {
  const app = new Hono<AppEnv>();

  app.post("/tenants/:tenant/keys", async (c) => {
    const tenantId = c.req.param("tenant");
    await getTenant(c.env.DB, tenantId);
    const input = await parseJsonBody(c, issueSchema);
    if (input.expires_at !== undefined && input.expires_at <= Date.now()) {
      throw new ApiError(400, "invalid_request", "expires_at is in the past", {
        param: "expires_at",
      });
    }
    const id = newId("key_");
    const key = await generateApiKey();
    await c.env.DB.prepare(
      "INSERT INTO api_keys (id, tenant_id, hash, prefix, scopes, name, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
      .bind(
        id,
        tenantId,
        key.hash,
        key.display,
        JSON.stringify(input.scopes),
        input.name ?? null,
        input.expires_at ?? null,
        Date.now(),
      )
      .run();
    const row = await c.env.DB.prepare("SELECT * FROM api_keys WHERE id = ?")
      .bind(id)
      .first<KeyRow>();
    if (row === null) throw new ApiError(500, "key_not_stored", "The key was not stored");
    // The only time the secret leaves the gateway.
    return c.json({ ...keyView(row), key: key.secret }, 201);
  });

  app.get("/tenants/:tenant/keys", async (c) => {
    const tenantId = c.req.param("tenant");
    await getTenant(c.env.DB, tenantId);
    const { results } = await c.env.DB.prepare(
      "SELECT id, tenant_id, prefix, scopes, name, expires_at, revoked_at, last_used_at, created_at FROM api_keys WHERE tenant_id = ? ORDER BY created_at",
    )
      .bind(tenantId)
      .all<KeyRow>();
    return c.json({ object: "list", data: results.map(keyView) });
  });

  app.post("/keys/:id/revoke", async (c) => {
    const id = c.req.param("id");
    const row = await c.env.DB.prepare("SELECT hash FROM api_keys WHERE id = ?")
      .bind(id)
      .first<{ hash: string }>();
    if (row === null) throw new ApiError(404, "key_not_found", `No API key ${id}`);
    await c.env.DB.prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
      .bind(Date.now(), id)
      .run();
    resolver.forget(row.hash);
    await c.env.CACHE.delete(keyCacheKey(row.hash));
    return c.json({ id, object: "api_key", revoked: true });
  });

  return app;
}
