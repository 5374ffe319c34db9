import { z } from "zod";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { generateApiKey } from "./api-key.ts";
import { type KeyResolver, keyCacheKey } from "./key-resolver.ts";
import { scopes } from "./principal.ts";

export const issueKeySchema = z.strictObject({
  scopes: z.array(z.enum(scopes)).min(1).default(["inference"]),
  name: z.string().max(100).optional(),
  /** Unix ms. */
  expires_at: z.number().int().positive().optional(),
});

type KeyRow = {
  id: string;
  tenant_id: string;
  prefix: string;
  scopes: string;
  name: string | null;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
  created_at: number;
};

/** Every column but the hash: what the APIs show of a key. */
const shownColumns =
  "id, tenant_id, prefix, scopes, name, expires_at, revoked_at, last_used_at, created_at";

function keyView(row: KeyRow) {
  return { object: "api_key", ...row, scopes: JSON.parse(row.scopes) as string[] };
}

/**
 * Issues a key to a tenant; the returned `key` is the only time the secret
 * leaves the gateway (D1 keeps its SHA-256).
 */
export async function issueKey(
  env: Env,
  tenantId: string,
  input: z.infer<typeof issueKeySchema>,
  now: number,
) {
  if (input.expires_at !== undefined && input.expires_at <= now) {
    throw new ApiError(400, "invalid_request", "expires_at is in the past", {
      param: "expires_at",
    });
  }
  const id = newId("key_");
  const key = await generateApiKey();
  await env.DB.prepare(
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
      now,
    )
    .run();
  const row = await env.DB.prepare(`SELECT ${shownColumns} FROM api_keys WHERE id = ?`)
    .bind(id)
    .first<KeyRow>();
  if (row === null) throw new ApiError(500, "key_not_stored", "The key was not stored");
  return { ...keyView(row), key: key.secret };
}

export async function listKeys(env: Env, tenantId: string) {
  const { results } = await env.DB.prepare(
    `SELECT ${shownColumns} FROM api_keys WHERE tenant_id = ? ORDER BY created_at`,
  )
    .bind(tenantId)
    .all<KeyRow>();
  return { object: "list", data: results.map(keyView) };
}

/**
 * Revokes a key: D1 first, then the KV copy and this isolate's copy (see
 * keyCacheTtl for the bound elsewhere). With `tenantId`, only that tenant's
 * keys can be found; another tenant's key is the same 404 as none.
 */
export async function revokeKey(
  env: Env,
  resolver: KeyResolver,
  id: string,
  tenantId: string | null,
  now: number,
) {
  const row = await env.DB.prepare("SELECT hash, tenant_id FROM api_keys WHERE id = ?")
    .bind(id)
    .first<{ hash: string; tenant_id: string }>();
  if (row === null || (tenantId !== null && row.tenant_id !== tenantId)) {
    throw new ApiError(404, "key_not_found", `No API key ${id}`);
  }
  await env.DB.prepare("UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
    .bind(now, id)
    .run();
  resolver.forget(row.hash);
  await env.CACHE.delete(keyCacheKey(row.hash));
  return { id, object: "api_key", revoked: true };
}
