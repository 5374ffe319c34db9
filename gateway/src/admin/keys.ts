import { Hono } from "hono";
import type { KeyResolver } from "../auth/key-resolver.ts";
import { issueKey, issueKeySchema, listKeys, revokeKey } from "../auth/key-store.ts";
import type { AppEnv } from "../env.ts";
import { parseJsonBody } from "../validation.ts";
import { getTenant } from "./tenants.ts";

/** /admin/tenants/:tenant/keys and /admin/keys/:id/revoke: any tenant's keys. */
export function keyRoutes(resolver: KeyResolver, now: () => number) {
  const app = new Hono<AppEnv>();

  app.post("/tenants/:tenant/keys", async (c) => {
    const tenantId = c.req.param("tenant");
    await getTenant(c.env.DB, tenantId);
    const input = await parseJsonBody(c, issueKeySchema);
    return c.json(await issueKey(c.env, tenantId, input, now()), 201);
  });

  app.get("/tenants/:tenant/keys", async (c) => {
    const tenantId = c.req.param("tenant");
    await getTenant(c.env.DB, tenantId);
    return c.json(await listKeys(c.env, tenantId));
  });

  app.post("/keys/:id/revoke", async (c) =>
    c.json(await revokeKey(c.env, resolver, c.req.param("id"), null, now())),
  );

  return app;
}
