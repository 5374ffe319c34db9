import { Hono } from "hono";
import type { AppEnv } from "../env.ts";
import { parseJsonBody } from "../validation.ts";
import type { KeyResolver } from "./key-resolver.ts";
import { issueKey, issueKeySchema, listKeys, revokeKey } from "./key-store.ts";
import { apiKeyAuth } from "./middleware.ts";

/** /v1/keys: a tenant's own keys, for keys with the `admin` scope. */
export function selfServiceKeyRoutes(keys: KeyResolver, now: () => number) {
  const app = new Hono<AppEnv>();
  app.use(apiKeyAuth(keys, "admin", now));

  app.get("/", async (c) => c.json(await listKeys(c.env, c.get("principal").tenantId)));

  app.post("/", async (c) => {
    const input = await parseJsonBody(c, issueKeySchema);
    return c.json(await issueKey(c.env, c.get("principal").tenantId, input, now()), 201);
  });

  app.post("/:id/revoke", async (c) =>
    c.json(await revokeKey(c.env, keys, c.req.param("id"), c.get("principal").tenantId, now())),
  );

  return app;
}
