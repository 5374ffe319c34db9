import { PageAllocatorError } from "./errors.ts";

/** Pages one token's KV takes in the pool: its K page and its V page (PROTOCOL.md "Page layout"). */
export const PAGES_PER_TOKEN = 2;

export interface PageStats {
  total: number;
  /** free and safe for any use */
  free: number;
  /** freed while a step that may read them was in flight: KV may take them, adapter loads not yet */
  fenced: number;
  kv: number;
  adapter: number;
}

const FREE = 0;
const FENCED = 1;
const KV = 2;
const ADAPTER = 3;

/**
 * Unified Paging (S-LoRA): one pool of page ids for KV cache and adapter weights, with a
 * page table per sequence and a page list per adapter.
 *
 * Pages freed while steps are in flight are *fenced* until those steps complete: the
 * executor runs steps in order on one stream, so a later step may write them as KV, but an
 * adapter load (a side stream) must not overwrite what a running step still reads.
 * No page is shared under PROTOCOL v1 (a new sequence's page table starts empty), so each
 * page has exactly one owner and a double free is an error, not a reference count.
 *
 * Example:
 *   const pages = new PageAllocator(1000);
 *   if (pages.canAllocateKv(16)) pages.allocateKv(seqId, 16); // 32 page ids
 *   pages.freeSeq(seqId, lastSentStepId);                      // fenced until that step is done
 *   pages.settle(completedStepId);
 */
export class PageAllocator {
  numPages: number;
  #state: Uint8Array;
  /** settled free pages, used as a stack */
  readonly #free: number[] = [];
  /** groups of fenced pages, fences non-decreasing */
  readonly #fenced: { fence: number; pages: number[] }[] = [];
  #numFenced = 0;
  readonly #seqTables = new Map<number, number[]>();
  readonly #adapterPages = new Map<number, Int32Array>();
  #numKv = 0;
  #numAdapter = 0;

  constructor(numPages: number) {
    if (!Number.isSafeInteger(numPages) || numPages < 1) {
      throw new PageAllocatorError(`numPages must be a positive integer, got ${numPages}`);
    }
    this.numPages = numPages;
    this.#state = new Uint8Array(numPages);
    // Highest ids at the bottom of the stack so small ids are handed out first (readable plans).
    for (let page = numPages - 1; page >= 0; page--) this.#free.push(page);
  }

  /** Pages KV could take now (free and fenced), for policies that keep room for running seqs. */
  kvRoom(): number {
    return this.#free.length + this.#numFenced;
  }

  canAllocateKv(numTokens: number): boolean {
    return numTokens * PAGES_PER_TOKEN <= this.#free.length + this.#numFenced;
  }

  /** Appends pages for `numTokens` tokens to the seq's page table; returns them (K, V per token). */
  allocateKv(seqId: number, numTokens: number): Int32Array {
    const n = numTokens * PAGES_PER_TOKEN;
    if (!Number.isSafeInteger(numTokens) || numTokens < 1 || !this.canAllocateKv(numTokens)) {
      throw new PageAllocatorError(
        `cannot allocate KV for ${numTokens} tokens: ${this.#free.length + this.#numFenced} pages free`,
      );
    }
    const pages = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      // Fenced pages first: a step may reuse them, which keeps settled ones for adapter loads.
      const page = this.#takeFenced() ?? (this.#free.pop() as number);
      this.#state[page] = KV;
      pages[i] = page;
    }
    let table = this.#seqTables.get(seqId);
    if (table === undefined) {
      table = [];
      this.#seqTables.set(seqId, table);
    }
    for (const page of pages) table.push(page);
    this.#numKv += n;
    return pages;
  }

  /** The seq's page table: K, V page per token, in position order. */
  seqPages(seqId: number): readonly number[] {
    return this.#seqTables.get(seqId) ?? [];
  }

  /**
   * Frees a sequence's pages. `fence`: the last step sent that may read them, or null when no
   * step is in flight.
   */
  freeSeq(seqId: number, fence: number | null): void {
    const table = this.#seqTables.get(seqId);
    if (table === undefined) return;
    this.#seqTables.delete(seqId);
    this.#numKv -= table.length;
    this.#release(table, fence);
  }

  canAllocateAdapter(numPages: number): boolean {
    return numPages <= this.#free.length;
  }

  allocateAdapter(adapterId: number, numPages: number): Int32Array {
    if (this.#adapterPages.has(adapterId)) {
      throw new PageAllocatorError(`adapter ${adapterId} already holds pages`);
    }
    if (!Number.isSafeInteger(numPages) || numPages < 1 || !this.canAllocateAdapter(numPages)) {
      throw new PageAllocatorError(
        `cannot allocate ${numPages} adapter pages: ${this.#free.length} settled pages free`,
      );
    }
    const pages = new Int32Array(numPages);
    for (let i = 0; i < numPages; i++) {
      const page = this.#free.pop() as number;
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
    this.#release(Array.from(pages), fence);
  }

  /** Every step up to `completedFence` has completed: its fenced pages are free for any use. */
  settle(completedFence: number): void {
    while (
      this.#fenced.length > 0 &&
      (this.#fenced[0] as { fence: number }).fence <= completedFence
    ) {
      const group = this.#fenced.shift() as { fence: number; pages: number[] };
      for (const page of group.pages) {
        this.#state[page] = FREE;
        this.#free.push(page);
      }
      this.#numFenced -= group.pages.length;
    }
  }

  /** Forgets every placement: the executor restarted with a pool of `numPages`. */
  reset(numPages: number): void {
    if (!Number.isSafeInteger(numPages) || numPages < 1) {
      throw new PageAllocatorError(`numPages must be a positive integer, got ${numPages}`);
    }
    this.numPages = numPages;
    this.#state = new Uint8Array(numPages);
    this.#free.length = 0;
    this.#fenced.length = 0;
    this.#numFenced = 0;
    this.#seqTables.clear();
    this.#adapterPages.clear();
    this.#numKv = 0;
    this.#numAdapter = 0;
    for (let page = this.numPages - 1; page >= 0; page--) this.#free.push(page);
  }

  stats(): PageStats {
    return {
      total: this.numPages,
      free: this.#free.length,
      fenced: this.#numFenced,
      kv: this.#numKv,
      adapter: this.#numAdapter,
    };
  }

  /**
   * Checks that every page is in exactly one place and the counts add up; throws
   * PageAllocatorError naming the first broken invariant. For tests and debugging.
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
    for (const page of this.#free) visit(page, FREE, "free list");
    for (const group of this.#fenced) for (const page of group.pages) visit(page, FENCED, "fenced");
    for (const [seqId, table] of this.#seqTables) {
      for (const page of table) visit(page, KV, `seq ${seqId}`);
    }
    for (const [adapterId, pages] of this.#adapterPages) {
      for (const page of pages) visit(page, ADAPTER, `adapter ${adapterId}`);
    }
    const s = this.stats();
    if (s.free + s.fenced + s.kv + s.adapter !== s.total || seen.indexOf(0) !== -1) {
      throw new PageAllocatorError(`pages leak: ${JSON.stringify(s)}`);
    }
  }

  #takeFenced(): number | undefined {
    const group = this.#fenced[0];
    if (group === undefined) return undefined;
    const page = group.pages.pop() as number;
    if (group.pages.length === 0) this.#fenced.shift();
    this.#numFenced--;
    return page;
  }

  #release(pages: readonly number[], fence: number | null): void {
    if (pages.length === 0) return;
    if (fence === null) {
      for (const page of pages) {
        this.#state[page] = FREE;
        this.#free.push(page);
      }
      return;
    }
    for (const page of pages) this.#state[page] = FENCED;
    const last = this.#fenced.at(-1);
    if (last !== undefined && last.fence > fence) {
      throw new PageAllocatorError(`fence ${fence} is older than fence ${last.fence}`);
    }
    if (last !== undefined && last.fence === fence) last.pages.push(...pages);
    else this.#fenced.push({ fence, pages: [...pages] });
    this.#numFenced += pages.length;
  }
}
