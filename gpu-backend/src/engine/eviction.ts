import type { AdapterManager, PoolRoom } from "./adapters.ts";
import type { PageAllocator } from "./allocator.ts";
import type { PrefixCache } from "./prefix-cache.ts";
import type { UseClock } from "./use-clock.ts";

/**
 * What rebuilding one page costs, relative: a KV page is recomputed by a prefill (a 7B
 * forward is ~14 GFLOP a token, two pages: ~17 µs a page on an H100 at ~400 TFLOP/s
 * achieved), an adapter page is copied back from the host tier (W × layers × 2 bytes =
 * 256 KiB for 7B at ~25 GB/s: ~10 µs), on a side stream beside the steps.
 */
export const REBUILD_COST_PER_PAGE = { kv: 2, adapter: 1 } as const;

/**
 * The unified pool's one eviction policy, over cached KV blocks no live sequence holds and
 * idle resident adapters (no admitted request pins them, no step in flight reads them):
 * evict the candidate whose age (UseClock ticks since its last use) per unit of rebuild
 * cost is largest, i.e. LRU weighted by what a page costs to rebuild. Within each kind
 * the candidate is its own LRU order (adapters: the least wanted by queued requests first,
 * prefix-cache.ts: a block's children before it). In a split pool (no-unify-mem) KV room
 * comes only from KV blocks and adapter room only from adapters.
 *
 * A page a running or admitted request needs is never a candidate: held blocks are not
 * evictable and pinned adapters not idle. Evicted KV pages a step in flight may still read
 * are fenced (allocator.ts): later steps may write them, adapter loads may not, so adapter
 * loads weigh settled blocks only.
 */
export class PoolEviction implements PoolRoom {
  readonly #pages: PageAllocator;
  readonly #cache: PrefixCache;
  readonly #adapters: () => AdapterManager;
  readonly #clock: UseClock;

  /** `adapters` is read when needed: the adapter manager is built with this as its PoolRoom. */
  constructor(
    pages: PageAllocator,
    cache: PrefixCache,
    adapters: () => AdapterManager,
    clock: UseClock,
  ) {
    this.#pages = pages;
    this.#cache = cache;
    this.#adapters = adapters;
    this.#clock = clock;
  }

  /**
   * Evicts one candidate to make KV room: a cached block, or (unified pool) an idle adapter
   * ranked at or after `minRank`. Returns which kind went, or null when none could.
   */
  evictForKv(minRank: number): "kv" | "adapter" | null {
    return this.#evictOne(minRank, false, this.#pages.unified);
  }

  evictForAdapter(minRank: number): boolean {
    return this.#evictOne(minRank, true, true) !== null;
  }

  reclaimableKv(): { settled: number; all: number } {
    const pages = this.#cache.evictablePages();
    // A split pool's KV pages never become adapter pages.
    return { all: pages.all, settled: this.#pages.unified ? pages.settled : 0 };
  }

  #evictOne(minRank: number, forAdapter: boolean, adaptersCount: boolean): "kv" | "adapter" | null {
    const kvCounts = !forAdapter || this.#pages.unified;
    const block = kvCounts ? this.#cache.oldestEvictable(forAdapter) : null;
    const adapter = adaptersCount ? this.#adapters().idleCandidate(minRank, forAdapter) : null;
    if (block === null && adapter === null) return null;
    const now = this.#clock.now;
    if (
      adapter === null ||
      (block !== null &&
        (now - block.lastUse) / REBUILD_COST_PER_PAGE.kv >=
          (now - adapter.lastUse) / REBUILD_COST_PER_PAGE.adapter)
    ) {
      this.#cache.evict(block as NonNullable<typeof block>);
      return "kv";
    }
    this.#adapters().evictOne(minRank, forAdapter);
    return "adapter";
  }
}
