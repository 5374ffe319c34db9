import type { Env } from "../env.ts";
import { LruCache } from "../lru.ts";
import { retryD1 } from "../storage/d1-retry.ts";
import { kvGetJson, kvPutJson } from "../storage/kv-cache.ts";
import type { AdapterRow } from "./adapter-store.ts";

/** What the hot path needs to route to an adapter and tell a backend how to fetch it. */
export type AdapterMeta = {
  id: string;
  name: string;
  baseModel: string;
  rank: number;
  sha256: string;
};

/**
 * Adapter name -> metadata per tenant: isolate LRU (10 s), KV (60 s), D1.
 * Only ready adapters are cached. Deleting an adapter removes the KV entry and
 * this isolate's copy; other isolates stop routing to it within the same
 * bound as key revocation (70 s), and its files are gone from R2 at once.
 */
export class AdapterResolver {
  readonly #local: LruCache<AdapterMeta>;

  constructor(now: () => number = Date.now) {
    this.#local = new LruCache(10_000, 10_000, now);
  }

  async resolve(env: Env, tenantId: string, name: string): Promise<AdapterMeta | null> {
    const key = adapterCacheKey(tenantId, name);
    const local = this.#local.get(key);
    if (local !== undefined) return local;
    const cached = await kvGetJson<AdapterMeta>(env.CACHE, key);
    if (cached !== null) {
      this.#local.set(key, cached);
      return cached;
    }
    const row = await retryD1(() =>
      env.DB.prepare("SELECT * FROM adapters WHERE tenant_id = ? AND name = ? AND status = 'ready'")
        .bind(tenantId, name)
        .first<AdapterRow>(),
    );
    if (row === null) return null;
    const meta = {
      id: row.id,
      name: row.name,
      baseModel: row.base_model,
      rank: row.rank,
      sha256: row.weights_sha256,
    };
    await kvPutJson(env.CACHE, key, meta, 60);
    this.#local.set(key, meta);
    return meta;
  }

  async forget(env: Env, tenantId: string, name: string): Promise<void> {
    const key = adapterCacheKey(tenantId, name);
    this.#local.delete(key);
    await env.CACHE.delete(key);
  }
}

function adapterCacheKey(tenantId: string, name: string): string {
  return `adapter:${tenantId}:${name}`;
}
