import { Hono } from "hono";
import type { AdapterRow } from "../adapters/adapter-store.ts";
import type { GatewayState } from "../app.ts";
import { describeCaller } from "../auth/me.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { AppEnv } from "../env.ts";
import { requestRows } from "../usage/request-rows.ts";
import { summarizeUsage } from "../usage/summary.ts";

/**
 * GET /v1/models (allowed base models + the tenant's ready adapters), GET /v1/usage,
 * GET /v1/usage/requests/:request_id (the rows of the requests sent with that
 * x-request-id) and GET /v1/me (any valid key: who it is, its scopes and its tenant's limits).
 */
export function accountRoutes(state: GatewayState) {
  const app = new Hono<AppEnv>();
  const auth = apiKeyAuth(state.keys, "inference", state.now);

  app.get("/models", auth, async (c) => {
    const principal = c.get("principal");
    const bases = await state.models.baseModels(c.env, principal);
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM adapters WHERE tenant_id = ? AND status = 'ready' ORDER BY name",
    )
      .bind(principal.tenantId)
      .all<AdapterRow>();
    // Each name once, as `model` resolves it: a base model wins over an adapter named like
    // it (uploads refuse such names now; rows from before may remain).
    const callable = results.filter((a) => !bases.includes(a.name));
    return c.json({
      object: "list",
      data: [
        ...bases.map((id) => ({
          id,
          object: "model",
          created: 0,
          owned_by: "lorafleet",
          root: id,
          parent: null,
        })),
        ...callable.map((a) => ({
          id: a.name,
          object: "model",
          created: Math.floor(a.created_at / 1000),
          owned_by: principal.tenantName,
          root: a.base_model,
          parent: a.base_model,
        })),
      ],
    });
  });

  app.get("/usage", auth, async (c) =>
    c.json(
      await summarizeUsage(c.env.DB, c.get("principal").tenantId, {
        start: c.req.query("start"),
        end: c.req.query("end"),
        groupBy: c.req.query("group_by"),
      }),
    ),
  );

  app.get("/usage/requests/:requestId", auth, async (c) =>
    c.json({
      object: "list",
      data: await requestRows(c.env.DB, c.get("principal").tenantId, c.req.param("requestId")),
    }),
  );

  app.get("/me", apiKeyAuth(state.keys, null, state.now), async (c) =>
    c.json(await describeCaller(c.env, c.get("principal"))),
  );

  return app;
}
