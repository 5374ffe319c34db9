import { PageAllocatorError } from "./errors.ts";

/** Pages one token's KV takes in the pool: its K page and its V page (PROTOCOL.md "Page layout"). */
export const PAGES_PER_TOKEN = 2;

export interface PageStats {
  total: number;
  /** free and safe for any use */
  free: number;
  /** freed while a step that may read them was in flight: KV may take them, adapter loads not yet */
  fenced: number;
  /** KV pages in the page table of at least one live sequence */
  kv: number;
  /** KV pages the prefix cache keeps that no live sequence holds: evictable */
  cached: number;
  adapter: number;
}

const FREE = 0;
const FENCED = 1;
const KV = 2;
const CACHED = 3;
const ADAPTER = 4;

/**
 * How the pool is shared. `unified` (S-LoRA's Unified Paging): KV and adapters take pages
 * from one free list. `{ adapterFraction }`: the paper's "no-unify-mem" ablation, a static
 * split: the first round(numPages × adapterFraction) page ids only ever hold adapters, the
 * rest only KV, so pages an evicted adapter frees cannot become KV and vice versa.
 */
export type PoolSharing = "unified" | { adapterFraction: number };

/** Pages one use may draw from: free ones (a stack) and fenced groups (fences non-decreasing). */
interface Region {
  free: number[];
  fenced: { fence: number; pages: number[] }[];
  numFenced: number;
  /** first page id of the region; it spans [start, end) */
  start: number;
  end: number;
}

/**
 * Unified Paging (S-LoRA): one pool of page ids for KV cache and adapter weights, with a
 * page table per sequence and a page list per adapter.
 *
 * Pages freed while steps are in flight are *fenced* until those steps complete: the
 * executor runs steps in order on one stream, so a later step may write them as KV, but an
 * adapter load (a side stream) must not overwrite what a running step still reads.
 *
 * KV pages are shared (prefix caching): a page sits in the page tables of as many live
 * sequences as its reference count says, and the prefix cache may *retain* it, so that
 * when its last sequence lets go it stays (state cached, reference count 0, evictable)
 * instead of going free. Every page is in exactly one state: free, fenced, kv (count >= 1),
 * cached (retained, count 0) or adapter; letting go of a page that no sequence holds is an
 * error, not a no-op.
 *
 * Example:
 *   const pages = new PageAllocator(1000); // or (1000, { adapterFraction: 0.5 }): split pool
 *   if (pages.canAllocateKv(16)) pages.allocateKv(seqId, 16); // 32 page ids
 *   pages.retain(pages.seqPages(seqId).slice(0, 32));          // the prefix cache keeps them
 *   pages.shareKv(otherSeqId, cachedPages);                    // a prefix hit: count + 1
 *   pages.freeSeq(seqId, lastSentStepId);                      // fenced until that step is done
 *   pages.settle(completedStepId);
 */
export class PageAllocator {
  numPages: number;
  readonly sharing: PoolSharing;
  #state: Uint8Array;
  /** per page: the live sequences whose page tables hold it */
  #refs: Int32Array;
  /** per page: 1 while the prefix cache keeps it */
  #retained: Uint8Array;
  /** where KV pages come from, and where adapter pages come from: the same object when unified */
  #kv: Region;
  #adapter: Region;
  readonly #seqTables = new Map<number, number[]>();
  readonly #adapterPages = new Map<number, Int32Array>();
  #numKv = 0;
  #numCached = 0;
  #numAdapter = 0;

  constructor(numPages: number, sharing: PoolSharing = "unified") {
    if (sharing !== "unified") {
      const f = sharing.adapterFraction;
      if (!Number.isFinite(f) || f <= 0 || f >= 1) {
        throw new PageAllocatorError(`adapterFraction must be in (0, 1), got ${f}`);
      }
    }
    this.sharing = sharing;
    this.numPages = 0;
    this.#state = new Uint8Array(0);
    this.#refs = new Int32Array(0);
    this.#retained = new Uint8Array(0);
    this.#kv = this.#adapter = emptyRegion(0, 0);
    this.reset(numPages);
  }

  /** Whether freeing adapter pages makes room for KV (and KV pages for adapters). */
  get unified(): boolean {
    return this.sharing === "unified";
  }

  /** The most pages KV can ever hold: the pool, or its KV share when split. */
  get kvCapacity(): number {
    return this.#kv.end - this.#kv.start;
  }

  /** The most pages adapters can ever hold. */
  get adapterCapacity(): number {
    return this.#adapter.end - this.#adapter.start;
  }

  /** Whether an adapter of `adapterPages` and a request's `kvPages` could be resident together. */
  fitsTogether(adapterPages: number, kvPages: number): boolean {
    if (this.unified) return adapterPages + kvPages <= this.numPages;
    return adapterPages <= this.adapterCapacity && kvPages <= this.kvCapacity;
  }

  /** Pages KV could take now (free and fenced), for policies that keep room for running seqs. */
  kvRoom(): number {
    return this.#kv.free.length + this.#kv.numFenced;
  }

  canAllocateKv(numTokens: number): boolean {
    return numTokens * PAGES_PER_TOKEN <= this.kvRoom();
  }

  /** Appends pages for `numTokens` tokens to the seq's page table; returns them (K, V per token). */
  allocateKv(seqId: number, numTokens: number): Int32Array {
    const n = numTokens * PAGES_PER_TOKEN;
    if (!Number.isSafeInteger(numTokens) || numTokens < 1 || !this.canAllocateKv(numTokens)) {
      throw new PageAllocatorError(
        `cannot allocate KV for ${numTokens} tokens: ${this.kvRoom()} pages free`,
      );
    }
    const pages = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      // Fenced pages first: a step may reuse them, which keeps settled ones for adapter loads.
      const page = takeFenced(this.#kv) ?? (this.#kv.free.pop() as number);
      this.#state[page] = KV;
      this.#refs[page] = 1;
      pages[i] = page;
    }
    const table = this.#seqTables.get(seqId) ?? [];
    this.#seqTables.set(seqId, table);
    for (const page of pages) table.push(page);
    this.#numKv += n;
    return pages;
  }

  /**
   * Appends pages other sequences hold or the prefix cache keeps (a prefix hit) to the seq's
   * page table; each page's reference count goes up by one.
   */
  shareKv(seqId: number, pages: ArrayLike<number>): void {
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i] as number;
      const state = this.#state[page];
      if (state !== KV && state !== CACHED) {
        throw new PageAllocatorError(`page ${page} holds no KV to share (state ${state})`);
      }
    }
    const table = this.#seqTables.get(seqId) ?? [];
    this.#seqTables.set(seqId, table);
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i] as number;
      if (this.#state[page] === CACHED) {
        this.#state[page] = KV;
        this.#numCached--;
        this.#numKv++;
      }
      this.#refs[page] = (this.#refs[page] as number) + 1;
      table.push(page);
    }
  }

  /** The seq's page table: K, V page per token, in position order. */
  seqPages(seqId: number): readonly number[] {
    return this.#seqTables.get(seqId) ?? [];
  }

  /** How many live sequences hold the page. */
  refCount(page: number): number {
    return this.#refs[page] ?? 0;
  }

  /**
   * Lets go of a sequence's pages: each page's reference count goes down by one; a page no
   * sequence holds any more stays cached when retained, else is freed. `fence`: the last
   * step sent that may read them, or null when no step is in flight.
   */
  freeSeq(seqId: number, fence: number | null): void {
    const table = this.#seqTables.get(seqId);
    if (table === undefined) return;
    this.#seqTables.delete(seqId);
    const freed: number[] = [];
    for (const page of table) {
      const refs = (this.#refs[page] as number) - 1;
      if (this.#state[page] !== KV || refs < 0) {
        throw new PageAllocatorError(
          `seq ${seqId} lets go of page ${page}, which it does not hold`,
        );
      }
      this.#refs[page] = refs;
      if (refs > 0) continue;
      this.#numKv--;
      if (this.#retained[page] === 1) {
        this.#state[page] = CACHED;
        this.#numCached++;
      } else {
        freed.push(page);
      }
    }
    this.#release(this.#kv, freed, fence);
  }

  /** The prefix cache keeps these KV pages (held by live sequences now) once they let go. */
  retain(pages: ArrayLike<number>): void {
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i] as number;
      if (this.#state[page] !== KV || this.#retained[page] === 1) {
        throw new PageAllocatorError(
          `page ${page} cannot be retained: state ${this.#state[page]}, retained ${this.#retained[page]}`,
        );
      }
    }
    for (let i = 0; i < pages.length; i++) this.#retained[pages[i] as number] = 1;
  }

  /**
   * The prefix cache gives pages up (eviction): those no sequence holds are
   * freed, behind `fence` as in freeSeq; those still held go free when their last holder
   * lets go.
   */
  unretain(pages: ArrayLike<number>, fence: number | null): void {
    const freed: number[] = [];
    for (let i = 0; i < pages.length; i++) {
      const page = pages[i] as number;
      if (this.#retained[page] !== 1) {
        throw new PageAllocatorError(`page ${page} is not retained`);
      }
      this.#retained[page] = 0;
      if (this.#state[page] === CACHED) {
        this.#numCached--;
        freed.push(page);
      }
    }
    this.#release(this.#kv, freed, fence);
  }

  /** Settled free pages an adapter load could take now. */
  adapterRoom(): number {
    return this.#adapter.free.length;
  }

  canAllocateAdapter(numPages: number): boolean {
    return numPages <= this.#adapter.free.length;
  }

  allocateAdapter(adapterId: number, numPages: number): Int32Array {
    if (this.#adapterPages.has(adapterId)) {
      throw new PageAllocatorError(`adapter ${adapterId} already holds pages`);
    }
    if (!Number.isSafeInteger(numPages) || numPages < 1 || !this.canAllocateAdapter(numPages)) {
      throw new PageAllocatorError(
        `cannot allocate ${numPages} adapter pages: ${this.#adapter.free.length} settled pages free`,
      );
    }
    const pages = new Int32Array(numPages);
    for (let i = 0; i < numPages; i++) {
      const page = this.#adapter.free.pop() as number;
      this.#state[page] = ADAPTER;
      pages[i] = page;
    }
    this.#adapterPages.set(adapterId, pages);
    this.#numAdapter += numPages;
    return pages;
  }

  /** Frees an adapter's pages; `fence` as in freeSeq. */
  freeAdapter(adapterId: number, fence: number | null): void {
    const pages = this.#adapterPages.get(adapterId);
    if (pages === undefined) {
      throw new PageAllocatorError(`adapter ${adapterId} holds no pages`);
    }
    this.#adapterPages.delete(adapterId);
    this.#numAdapter -= pages.length;
    this.#release(this.#adapter, Array.from(pages), fence);
  }

  /** Every step up to `completedFence` has completed: its fenced pages are free for any use. */
  settle(completedFence: number): void {
    for (const region of this.#regions()) {
      while (
        region.fenced.length > 0 &&
        (region.fenced[0] as { fence: number }).fence <= completedFence
      ) {
        const group = region.fenced.shift() as { fence: number; pages: number[] };
        for (const page of group.pages) {
          this.#state[page] = FREE;
          region.free.push(page);
        }
        region.numFenced -= group.pages.length;
      }
    }
  }

  /** Forgets every placement: the executor restarted with a pool of `numPages`. */
  reset(numPages: number): void {
    const minPages = this.unified ? 1 : 2;
    if (!Number.isSafeInteger(numPages) || numPages < minPages) {
      throw new PageAllocatorError(
        `numPages must be an integer of at least ${minPages}, got ${numPages}`,
      );
    }
    this.numPages = numPages;
    this.#state = new Uint8Array(numPages);
    this.#refs = new Int32Array(numPages);
    this.#retained = new Uint8Array(numPages);
    this.#seqTables.clear();
    this.#adapterPages.clear();
    this.#numKv = 0;
    this.#numCached = 0;
    this.#numAdapter = 0;
    if (this.sharing === "unified") {
      this.#kv = this.#adapter = emptyRegion(0, numPages);
    } else {
      // Each side keeps at least one page, so neither capacity is zero.
      const split = Math.min(
        numPages - 1,
        Math.max(1, Math.round(numPages * this.sharing.adapterFraction)),
      );
      this.#adapter = emptyRegion(0, split);
      this.#kv = emptyRegion(split, numPages);
    }
  }

  stats(): PageStats {
    let free = 0;
    let fenced = 0;
    for (const region of this.#regions()) {
      free += region.free.length;
      fenced += region.numFenced;
    }
    return {
      total: this.numPages,
      free,
      fenced,
      kv: this.#numKv,
      cached: this.#numCached,
      adapter: this.#numAdapter,
    };
  }

  /**
   * Checks that every page is in exactly one state and place, that reference counts are
   * what the page tables say, and that the counts add up (free + fenced + kv + cached +
   * adapter = total); throws PageAllocatorError naming the first broken invariant. For
   * tests and debugging.
   */
  checkInvariants(): void {
    const seen = new Uint8Array(this.numPages);
    const visit = (page: number, expected: number, where: string): void => {
      if (seen[page] === 1)
        throw new PageAllocatorError(`page ${page} is in two places (${where})`);
      if (this.#state[page] !== expected) {
        throw new PageAllocatorError(`page ${page} in ${where} has state ${this.#state[page]}`);
      }
      seen[page] = 1;
    };
    const holders = new Int32Array(this.numPages);
    const within = (page: number, region: Region, where: string): void => {
      if (page < region.start || page >= region.end) {
        throw new PageAllocatorError(
          `page ${page} in ${where} is outside its share [${region.start}, ${region.end})`,
        );
      }
    };
    for (const region of this.#regions()) {
      const where = region === this.#kv ? "KV" : "adapter";
      for (const page of region.free) {
        within(page, region, `${where} free list`);
        visit(page, FREE, "free list");
      }
      let numFenced = 0;
      for (const group of region.fenced) {
        numFenced += group.pages.length;
        for (const page of group.pages) {
          within(page, region, `${where} fenced`);
          visit(page, FENCED, "fenced");
        }
      }
      if (numFenced !== region.numFenced) {
        throw new PageAllocatorError(`${where} fenced count ${region.numFenced} != ${numFenced}`);
      }
    }
    for (const [seqId, table] of this.#seqTables) {
      for (const page of table) {
        within(page, this.#kv, `seq ${seqId}`);
        if (this.#state[page] !== KV) {
          throw new PageAllocatorError(
            `page ${page} of seq ${seqId} has state ${this.#state[page]}`,
          );
        }
        holders[page] = (holders[page] as number) + 1;
      }
    }
    for (let page = 0; page < this.numPages; page++) {
      const refs = this.#refs[page] as number;
      if (refs !== holders[page]) {
        throw new PageAllocatorError(
          `page ${page} has reference count ${refs}, held by ${holders[page]} page tables`,
        );
      }
      const state = this.#state[page];
      if (state === KV) visit(page, KV, "page tables");
      if (state === CACHED) {
        within(page, this.#kv, "cached");
        visit(page, CACHED, "cached");
      }
      if (this.#retained[page] === 1 && state !== KV && state !== CACHED) {
        throw new PageAllocatorError(`page ${page} is retained in state ${state}`);
      }
      if (state === CACHED && this.#retained[page] !== 1) {
        throw new PageAllocatorError(`page ${page} is cached but not retained`);
      }
    }
    for (const [adapterId, pages] of this.#adapterPages) {
      for (const page of pages) {
        within(page, this.#adapter, `adapter ${adapterId}`);
        visit(page, ADAPTER, `adapter ${adapterId}`);
      }
    }
    const s = this.stats();
    const states = Array.from(this.#state);
    const count = (state: number) => states.filter((x) => x === state).length;
    if (count(KV) !== s.kv || count(CACHED) !== s.cached || count(ADAPTER) !== s.adapter) {
      throw new PageAllocatorError(`page counts disagree with states: ${JSON.stringify(s)}`);
    }
    if (s.free + s.fenced + s.kv + s.cached + s.adapter !== s.total || seen.indexOf(0) !== -1) {
      throw new PageAllocatorError(`pages leak: ${JSON.stringify(s)}`);
    }
  }

  #regions(): Region[] {
    return this.#kv === this.#adapter ? [this.#kv] : [this.#adapter, this.#kv];
  }

  #release(region: Region, pages: readonly number[], fence: number | null): void {
    if (pages.length === 0) return;
    if (fence === null) {
      for (const page of pages) {
        this.#state[page] = FREE;
        region.free.push(page);
      }
      return;
    }
    for (const page of pages) this.#state[page] = FENCED;
    const last = region.fenced.at(-1);
    // A cached block evicted now may have been read last by an older step than pages freed
    // before it: held until the newer fence, it is only held longer (the groups stay in
    // fence order).
    if (last !== undefined && last.fence >= fence) last.pages.push(...pages);
    else region.fenced.push({ fence, pages: [...pages] });
    region.numFenced += pages.length;
  }
}

function emptyRegion(start: number, end: number): Region {
  const free: number[] = [];
  // Highest ids at the bottom of the stack so small ids are handed out first (readable plans).
  for (let page = end - 1; page >= start; page--) free.push(page);
  return { free, fenced: [], numFenced: 0, start, end };
}

function takeFenced(region: Region): number | undefined {
  const group = region.fenced[0];
  if (group === undefined) return undefined;
  const page = group.pages.pop() as number;
  if (group.pages.length === 0) region.fenced.shift();
  region.numFenced--;
  return page;
}
