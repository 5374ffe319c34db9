import { Hono } from "hono";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { summarizeUsage } from "../usage/summary.ts";

/** /admin/usage?tenant_id=…&start=…&end=…&group_by=…: any tenant's usage, as GET /v1/usage. */
export function usageAdminRoutes() {
  const app = new Hono<AppEnv>();
  app.get("/", async (c) => {
    const tenantId = c.req.query("tenant_id");
    if (!tenantId)
      throw new ApiError(400, "invalid_request", "tenant_id is required", { param: "tenant_id" });
    return c.json(
      await summarizeUsage(c.env.DB, tenantId, {
        start: c.req.query("start"),
        end: c.req.query("end"),
        groupBy: c.req.query("group_by"),
      }),
    );
  });
  return app;
}
