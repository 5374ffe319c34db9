import { PAGES_PER_TOKEN, type PageAllocator } from "./allocator.ts";
import { PageAllocatorError } from "./errors.ts";
import type { UseClock } from "./use-clock.ts";

/**
 * The id of a block of `tokenIds` that follows the block `parent` (or, for a sequence's
 * first block, its root: base model, adapter, adapter sha256, cache salt). It must be
 * collision-resistant: a user who could make two prefixes collide would read another's KV.
 * The server gives the engine SHA-256 (node:crypto; the engine does no I/O and imports no
 * node: module); tests may pass anything injective.
 */
export type BlockHasher = (parent: string, tokenIds: readonly number[]) => string;

/** B full tokens of one sequence's KV, findable by the hash of everything up to its end. */
export interface KvBlock {
  readonly hash: string;
  /** K, V page per token: 2 × blockSize page ids */
  readonly pages: Int32Array;
  /** live seqs holding it (all of it, or its first tokens) */
  refs: number;
  /** UseClock tick of its last release: its age for the eviction policy */
  lastUse: number;
  /** the newest step sent that writes or reads it: its pages settle once that step completes */
  lastStep: number;
}

export interface PrefixCacheStats {
  /** admissions that looked for a cached prefix */
  queries: number;
  /** their tokens (prompt + output so far) */
  queryTokens: number;
  /** of those, tokens whose KV came from the cache */
  hitTokens: number;
  /** blocks findable now (held by live seqs or evictable) */
  blocks: number;
  /** blocks evicted to make room */
  evictions: number;
}

/** The chained hashes of one request's full blocks, computed as far as asked (its tokens only grow). */
export class BlockHashes {
  readonly #root: string;
  readonly #hash: BlockHasher;
  readonly #size: number;
  readonly #hashes: string[] = [];

  constructor(root: string, hash: BlockHasher, blockSize: number) {
    this.#root = root;
    this.#hash = hash;
    this.#size = blockSize;
  }

  /** The hash of block i: tokens [i·B, (i+1)·B) after all before them; `tokens` must cover it. */
  at(i: number, tokens: readonly number[]): string {
    if ((i + 1) * this.#size > tokens.length) {
      throw new PageAllocatorError(`block ${i} is not full: ${tokens.length} tokens known`);
    }
    while (this.#hashes.length <= i) {
      const k = this.#hashes.length;
      const parent = k === 0 ? this.#root : (this.#hashes[k - 1] as string);
      this.#hashes.push(this.#hash(parent, tokens.slice(k * this.#size, (k + 1) * this.#size)));
    }
    return this.#hashes[i] as string;
  }
}

/**
 * Automatic prefix caching over the unified pool (vLLM's APC with chained block hashes):
 * full blocks of B tokens stay findable by hash while a live sequence holds them, and after
 * (reference count 0, evictable) until the pool's eviction policy (eviction.ts) takes them.
 * Pages stay per token (2 per token, allocator.ts), so a sequence may take a block's first
 * tokens only. Disabled (`enabled` false) it finds nothing and keeps nothing, so the
 * scheduler runs one path either way.
 *
 * Example:
 *   const cache = new PrefixCache(pages, clock, 16, true);
 *   const { blocks, numTokens } = cache.lookup(hashes, tokens); // longest cached prefix
 *   cache.acquire(blocks);                                       // held: never evicted now
 *   cache.register(hash, pagesOfBlock, stepId);                  // a block this seq computes
 *   cache.release(blocks, lastSentStep);                         // evictable, LRU
 */
export class PrefixCache {
  readonly blockSize: number;
  readonly enabled: boolean;
  readonly #pages: PageAllocator;
  readonly #clock: UseClock;
  readonly #index = new Map<string, KvBlock>();
  /** blocks no seq holds, least recently released first */
  readonly #evictable = new Map<string, KvBlock>();
  /** evictable blocks a step in flight may still read: their pages would only be fenced */
  readonly #unsettled = new Set<KvBlock>();
  #evictablePages = 0;
  #completedStep = -1;
  readonly #counts = { queries: 0, queryTokens: 0, hitTokens: 0, evictions: 0 };

  constructor(pages: PageAllocator, clock: UseClock, blockSize: number, enabled: boolean) {
    this.#pages = pages;
    this.#clock = clock;
    this.blockSize = blockSize;
    this.enabled = enabled;
  }

  /**
   * The longest cached prefix of `tokens`: whole blocks, at most all tokens but the last
   * (it is computed again, so there are logits to sample from). The last block returned
   * may be needed for its first tokens only.
   */
  lookup(hashes: BlockHashes, tokens: readonly number[]): { blocks: KvBlock[]; numTokens: number } {
    const blocks: KvBlock[] = [];
    if (!this.enabled) return { blocks, numTokens: 0 };
    const size = this.blockSize;
    for (let i = 0; (i + 1) * size <= tokens.length; i++) {
      const block = this.#index.get(hashes.at(i, tokens));
      if (block === undefined) break;
      blocks.push(block);
    }
    const numTokens = Math.min(blocks.length * size, tokens.length - 1);
    while (blocks.length > 0 && (blocks.length - 1) * size >= numTokens) blocks.pop();
    return { blocks, numTokens };
  }

  /** An admission looked up `queryTokens` tokens and took `hitTokens` of them from the cache. */
  countQuery(queryTokens: number, hitTokens: number): void {
    this.#counts.queries++;
    this.#counts.queryTokens += queryTokens;
    this.#counts.hitTokens += hitTokens;
  }

  /** A seq takes these blocks: no longer evictable. */
  acquire(blocks: readonly KvBlock[]): void {
    for (const block of blocks) {
      if (block.refs === 0) this.#leaveEvictable(block);
      block.refs++;
    }
  }

  /**
   * A seq lets go of these blocks (its page table already freed); `lastSent`: the newest step
   * sent, which may still read them. Blocks nobody holds become evictable, the last block
   * first: a block's children are never older than it, and evicting a parent would strand
   * them.
   */
  release(blocks: readonly KvBlock[], lastSent: number | null): void {
    for (const block of blocks.toReversed()) {
      block.refs--;
      block.lastStep = Math.max(block.lastStep, lastSent ?? -1);
      // A block from before a restart is no longer findable: its pages went with the pool.
      if (block.refs > 0 || this.#index.get(block.hash) !== block) continue;
      block.lastUse = this.#clock.tick();
      this.#evictable.set(block.hash, block);
      this.#evictablePages += block.pages.length;
      if (block.lastStep > this.#completedStep) this.#unsettled.add(block);
    }
  }

  /**
   * Makes the pages of a block a seq computes (by step `stepId` at the latest) findable;
   * the seq holds it. null when that hash is cached already (the seq's copy stays private).
   */
  register(hash: string, pages: Int32Array, stepId: number): KvBlock | null {
    if (!this.enabled || this.#index.has(hash)) return null;
    if (pages.length !== this.blockSize * PAGES_PER_TOKEN) {
      throw new PageAllocatorError(
        `a block takes ${this.blockSize * PAGES_PER_TOKEN} pages, got ${pages.length}`,
      );
    }
    this.#pages.retain(pages);
    const block: KvBlock = {
      hash,
      pages,
      refs: 1,
      lastUse: 0,
      lastStep: stepId,
    };
    this.#index.set(hash, block);
    return block;
  }

  /** The evictable block the policy would weigh: the least recently released (settled only: for adapter loads). */
  oldestEvictable(settledOnly: boolean): KvBlock | null {
    for (const block of this.#evictable.values()) {
      if (!settledOnly || !this.#unsettled.has(block)) return block;
    }
    return null;
  }

  /** Pages evicting every evictable block would free: in all, and settled now. */
  evictablePages(): { all: number; settled: number } {
    let unsettled = 0;
    for (const block of this.#unsettled) unsettled += block.pages.length;
    return { all: this.#evictablePages, settled: this.#evictablePages - unsettled };
  }

  /** Forgets an evictable block; its pages go free (fenced while a step in flight may read them). */
  evict(block: KvBlock): void {
    if (block.refs !== 0 || this.#evictable.get(block.hash) !== block) {
      throw new PageAllocatorError(`block ${block.hash} is not evictable`);
    }
    this.#leaveEvictable(block);
    this.#index.delete(block.hash);
    this.#pages.unretain(block.pages, this.#fenceOf(block));
    this.#counts.evictions++;
  }

  /** Every step up to `stepId` has completed. */
  stepCompleted(stepId: number): void {
    this.#completedStep = stepId;
    for (const block of this.#unsettled) {
      if (block.lastStep <= stepId) this.#unsettled.delete(block);
    }
  }

  /** The executor restarted: its pool is gone (the allocator is reset beside this). */
  reset(): void {
    this.#index.clear();
    this.#evictable.clear();
    this.#unsettled.clear();
    this.#evictablePages = 0;
    this.#completedStep = -1;
  }

  stats(): PrefixCacheStats {
    return { ...this.#counts, blocks: this.#index.size };
  }

  /**
   * Checks that block reference counts are what `holders` (each live seq's blocks) say and
   * that exactly the blocks nobody holds are evictable; throws naming the first problem.
   */
  checkInvariants(holders: Iterable<readonly KvBlock[]>): void {
    const refs = new Map<KvBlock, number>();
    for (const blocks of holders) for (const b of blocks) refs.set(b, (refs.get(b) ?? 0) + 1);
    for (const [block, count] of refs) {
      if (block.refs !== count) {
        throw new PageAllocatorError(
          `block ${block.hash} counts ${block.refs} holders, has ${count}`,
        );
      }
    }
    let pages = 0;
    for (const block of this.#index.values()) {
      if (block.refs < 0)
        throw new PageAllocatorError(`block ${block.hash} has ${block.refs} holders`);
      if ((block.refs === 0) !== this.#evictable.has(block.hash)) {
        throw new PageAllocatorError(
          `block ${block.hash} has ${block.refs} holders; evictable: ${this.#evictable.has(block.hash)}`,
        );
      }
      if (block.refs === 0) {
        pages += block.pages.length;
        for (const page of block.pages) {
          if (this.#pages.refCount(page) !== 0) {
            throw new PageAllocatorError(
              `evictable block ${block.hash} has page ${page} in a page table`,
            );
          }
        }
      }
    }
    if (pages !== this.#evictablePages || this.#evictable.size > this.#index.size) {
      throw new PageAllocatorError(`evictable pages ${this.#evictablePages}, blocks hold ${pages}`);
    }
  }

  #leaveEvictable(block: KvBlock): void {
    this.#evictable.delete(block.hash);
    this.#unsettled.delete(block);
    this.#evictablePages -= block.pages.length;
  }

  #fenceOf(block: KvBlock): number | null {
    return block.lastStep > this.#completedStep ? block.lastStep : null;
  }
}
