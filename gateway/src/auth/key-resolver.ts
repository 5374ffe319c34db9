import { constantTimeEqual } from "../crypto.ts";
import type { Env } from "../env.ts";
import { LruCache } from "../lru.ts";
import { retryD1 } from "../storage/d1-retry.ts";
import { kvGetJson, kvPutJson } from "../storage/kv-cache.ts";
import type { Principal } from "./principal.ts";
import { type PrincipalRow, principalColumns, principalFromRow } from "./principal-row.ts";

/**
 * How long a key's resolution may be reused without asking D1.
 *
 * Revocation (and suspension, and limit changes) deletes the D1 row's validity,
 * the KV entry, and the entry in the isolate that handled it. Any other isolate
 * may keep using its copy for at most `isolateMs`; KV itself can serve a stale
 * copy in another location for at most `kvSeconds` (its expirationTtl and
 * Cloudflare's stated propagation bound). So a revoked key stops working
 * everywhere within `isolateMs / 1000 + kvSeconds` = 70 s, and in the location
 * that revoked it within 10 s.
 */
export const keyCacheTtl = { isolateMs: 10_000, kvSeconds: 60 } as const;

/** Last-used times are written at most this often per key and isolate. */
const lastUsedWriteIntervalMs = 60_000;

export function keyCacheKey(hash: string): string {
  return `key:${hash}`;
}

/**
 * Turns a key hash into the Principal it belongs to: per-isolate LRU, then KV,
 * then D1 (the source of truth). Unknown and revoked keys are not cached.
 */
export class KeyResolver {
  readonly #local: LruCache<Principal>;
  /** Keys whose last_used_at this isolate wrote recently; entries expire after the interval. */
  readonly #recentlyTouched: LruCache<true>;
  readonly #now: () => number;

  constructor(now: () => number = Date.now, capacity = 10_000) {
    this.#now = now;
    this.#local = new LruCache(capacity, keyCacheTtl.isolateMs, now);
    this.#recentlyTouched = new LruCache(capacity, lastUsedWriteIntervalMs, now);
  }

  async resolve(env: Env, hash: string): Promise<Principal | null> {
    const local = this.#local.get(hash);
    if (local !== undefined) return local;
    const cached = await kvGetJson<Principal>(env.CACHE, keyCacheKey(hash));
    if (cached !== null) {
      this.#local.set(hash, cached);
      return cached;
    }
    const row = await retryD1(() =>
      env.DB.prepare(
        `SELECT ${principalColumns} FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.hash = ?`,
      )
        .bind(hash)
        .first<PrincipalRow>(),
    );
    if (row === null || row.revoked_at !== null) return null;
    // The index lookup already matched; this guards against a collation or
    // trailing-space surprise ever matching a different stored value.
    if (!(await constantTimeEqual(row.hash, hash))) return null;
    const principal = principalFromRow(row);
    await kvPutJson(env.CACHE, keyCacheKey(hash), principal, keyCacheTtl.kvSeconds);
    this.#local.set(hash, principal);
    return principal;
  }

  /** Drops this isolate's copy (the caller deletes the KV entry). */
  forget(hash: string): void {
    this.#local.delete(hash);
  }

  /** A D1 write of last_used_at when this isolate has not written one lately, else null. */
  touch(env: Env, keyId: string): Promise<unknown> | null {
    if (this.#recentlyTouched.get(keyId)) return null;
    this.#recentlyTouched.set(keyId, true);
    return env.DB.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
      .bind(this.#now(), keyId)
      .run();
  }
}

/** Deletes the KV copies of every key of a tenant, after its row changed. */
export async function invalidateTenantKeys(
  env: Env,
  resolver: KeyResolver,
  tenantId: string,
): Promise<void> {
  const { results } = await env.DB.prepare("SELECT hash FROM api_keys WHERE tenant_id = ?")
    .bind(tenantId)
    .all<{ hash: string }>();
  await Promise.all(
    results.map((r) => {
      resolver.forget(r.hash);
      return env.CACHE.delete(keyCacheKey(r.hash));
    }),
  );
}
