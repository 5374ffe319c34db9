import { Hono } from "hono";
import { z } from "zod";
import { invalidateTenantKeys, type KeyResolver } from "../auth/key-resolver.ts";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { parseJsonBody } from "../validation.ts";

const limit = z.number().int().positive().nullable();

/** A tenant's limits, quotas and settings; absent fields are left as they are. */
const settingsSchema = z.strictObject({
  requests_per_minute: limit.optional(),
  tokens_per_minute: limit.optional(),
  concurrent_streams: limit.optional(),
  monthly_token_quota: limit.optional(),
  max_adapters: z.number().int().nonnegative().optional(),
  max_adapter_bytes: z.number().int().positive().optional(),
  max_rank: z.number().int().positive().optional(),
  allowed_base_models: z.array(z.string().min(1)).optional(),
  /** One prefix cache across the tenant's keys (default: one per key; see proxy/cache-salt.ts). */
  share_prefix_cache: z.boolean().optional(),
});

const createSchema = settingsSchema.extend({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{1,62}$/, "must be 2-63 lowercase letters, digits or dashes"),
});

type SettingsInput = z.infer<typeof settingsSchema>;

export type TenantRow = {
  id: string;
  name: string;
  status: string;
  requests_per_minute: number | null;
  tokens_per_minute: number | null;
  concurrent_streams: number | null;
  monthly_token_quota: number | null;
  max_adapters: number;
  max_adapter_bytes: number;
  max_rank: number;
  allowed_base_models: string;
  share_prefix_cache: number;
  created_at: number;
};

export function tenantView(row: TenantRow) {
  return {
    ...row,
    allowed_base_models: JSON.parse(row.allowed_base_models) as string[],
    share_prefix_cache: row.share_prefix_cache === 1,
  };
}

/** Column updates for the fields present in `input` (absent fields are left as they are). */
function settingAssignments(input: SettingsInput): {
  sql: string[];
  values: (string | number | null)[];
} {
  const sql: string[] = [];
  const values: (string | number | null)[] = [];
  for (const [column, value] of Object.entries(input)) {
    if (value === undefined || column === "name") continue;
    sql.push(`${column} = ?`);
    values.push(
      Array.isArray(value)
        ? JSON.stringify(value)
        : typeof value === "boolean"
          ? Number(value)
          : value,
    );
  }
  return { sql, values };
}

/** /admin/tenants: create, list, get, change limits and settings, suspend, resume. */
export function tenantRoutes(resolver: KeyResolver) {
  const app = new Hono<AppEnv>();

  app.post("/", async (c) => {
    const input = await parseJsonBody(c, createSchema);
    const id = newId("tn_");
    const taken = await c.env.DB.prepare("SELECT 1 FROM tenants WHERE name = ?")
      .bind(input.name)
      .first();
    if (taken !== null)
      throw new ApiError(409, "tenant_exists", `A tenant named ${input.name} exists`);
    await c.env.DB.prepare("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
      .bind(id, input.name, Date.now())
      .run();
    const { sql, values } = settingAssignments(input);
    if (sql.length > 0) {
      await c.env.DB.prepare(`UPDATE tenants SET ${sql.join(", ")} WHERE id = ?`)
        .bind(...values, id)
        .run();
    }
    return c.json(tenantView(await getTenant(c.env.DB, id)), 201);
  });

  app.get("/", async (c) => {
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM tenants ORDER BY created_at",
    ).all<TenantRow>();
    return c.json({ object: "list", data: results.map(tenantView) });
  });

  app.get("/:id", async (c) => c.json(tenantView(await getTenant(c.env.DB, c.req.param("id")))));

  app.patch("/:id", async (c) => {
    const id = c.req.param("id");
    await getTenant(c.env.DB, id);
    const { sql, values } = settingAssignments(await parseJsonBody(c, settingsSchema));
    if (sql.length > 0) {
      await c.env.DB.prepare(`UPDATE tenants SET ${sql.join(", ")} WHERE id = ?`)
        .bind(...values, id)
        .run();
      await invalidateTenantKeys(c.env, resolver, id);
    }
    return c.json(tenantView(await getTenant(c.env.DB, id)));
  });

  for (const [action, status] of [
    ["suspend", "suspended"],
    ["resume", "active"],
  ] as const) {
    app.post(`/:id/${action}`, async (c) => {
      const id = c.req.param("id");
      await getTenant(c.env.DB, id);
      await c.env.DB.prepare("UPDATE tenants SET status = ? WHERE id = ?").bind(status, id).run();
      await invalidateTenantKeys(c.env, resolver, id);
      return c.json(tenantView(await getTenant(c.env.DB, id)));
    });
  }

  return app;
}

export async function getTenant(db: D1Database, id: string): Promise<TenantRow> {
  const row = await db.prepare("SELECT * FROM tenants WHERE id = ?").bind(id).first<TenantRow>();
  if (row === null) throw new ApiError(404, "tenant_not_found", `No tenant ${id}`);
  return row;
}
