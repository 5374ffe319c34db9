import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGES_PER_TOKEN, PageAllocator, type PoolSharing } from "./allocator.ts";
import { PageAllocatorError } from "./errors.ts";

type Op =
  | { kind: "kv"; seq: number; tokens: number }
  | { kind: "share"; seq: number; from: number; count: number }
  | { kind: "retain"; seq: number; count: number }
  | { kind: "unretain"; pick: number; count: number; fenced: boolean }
  | { kind: "freeSeq"; seq: number; fenced: boolean }
  | { kind: "adapter"; adapter: number; pages: number }
  | { kind: "freeAdapter"; adapter: number; fenced: boolean }
  | { kind: "stepDone" };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("kv"), seq: fc.nat(7), tokens: fc.integer({ min: 1, max: 20 }) }),
  fc.record({
    kind: fc.constant("share"),
    seq: fc.nat(7),
    from: fc.nat(1000),
    count: fc.integer({ min: 1, max: 12 }),
  }),
  fc.record({
    kind: fc.constant("retain"),
    seq: fc.nat(7),
    count: fc.integer({ min: 1, max: 12 }),
  }),
  fc.record({
    kind: fc.constant("unretain"),
    pick: fc.nat(1000),
    count: fc.integer({ min: 1, max: 12 }),
    fenced: fc.boolean(),
  }),
  fc.record({ kind: fc.constant("freeSeq"), seq: fc.nat(7), fenced: fc.boolean() }),
  fc.record({
    kind: fc.constant("adapter"),
    adapter: fc.nat(4),
    pages: fc.integer({ min: 1, max: 30 }),
  }),
  fc.record({ kind: fc.constant("freeAdapter"), adapter: fc.nat(4), fenced: fc.boolean() }),
  fc.record({ kind: fc.constant("stepDone") }),
) as fc.Arbitrary<Op>;

const sharing: fc.Arbitrary<PoolSharing> = fc.oneof(
  fc.constant("unified" as const),
  fc.record({ adapterFraction: fc.double({ min: 0.05, max: 0.95, noNaN: true }) }),
);

/** What the allocator's users know: each seq's page table, the retained pages, adapters. */
class PoolModel {
  readonly tables = new Map<number, number[]>();
  readonly retained = new Set<number>();
  readonly adapters = new Map<number, number[]>();

  refs(page: number): number {
    let n = 0;
    for (const table of this.tables.values()) for (const p of table) if (p === page) n++;
    return n;
  }

  /** pages some seq holds */
  held(): Set<number> {
    return new Set([...this.tables.values()].flat());
  }

  /** pages held or cached: what sharing may take */
  kvPages(): number[] {
    return [...new Set([...this.held(), ...this.retained])].sort((a, b) => a - b);
  }

  adapterPages(): Set<number> {
    return new Set([...this.adapters.values()].flat());
  }
}

describe("PageAllocator", () => {
  it("keeps every page in one state, counts and references right, over random operations", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 200 }),
        sharing,
        fc.array(op, { maxLength: 200 }),
        (total, share, ops) => {
          const pages = new PageAllocator(total, share);
          const kvCap = pages.kvCapacity;
          const adapterCap = pages.adapterCapacity;
          if (share === "unified") expect([kvCap, adapterCap]).toEqual([total, total]);
          else expect(kvCap + adapterCap).toBe(total);
          const model = new PoolModel();
          let step = 0; // steps sent; `stepDone` completes the oldest
          let completed = -1;
          const fence = (fenced: boolean) => (fenced && step > completed + 1 ? step - 1 : null);
          for (const o of ops) {
            if (o.kind === "kv") {
              const ok = pages.canAllocateKv(o.tokens);
              // What KV may still take: pages neither held, cached nor adapter pages (in a
              // split pool, of the KV share).
              const kvTaken = model.kvPages().length;
              const room =
                share === "unified" ? total - kvTaken - model.adapterPages().size : kvCap - kvTaken;
              expect(ok).toBe(o.tokens * PAGES_PER_TOKEN <= room);
              if (!ok) {
                expect(() => pages.allocateKv(o.seq, o.tokens)).toThrow(PageAllocatorError);
                continue;
              }
              const got = pages.allocateKv(o.seq, o.tokens);
              expect(got.length).toBe(o.tokens * PAGES_PER_TOKEN);
              const taken = new Set([...model.kvPages(), ...model.adapterPages()]);
              for (const p of got) expect(taken.has(p)).toBe(false);
              model.tables.set(o.seq, [...(model.tables.get(o.seq) ?? []), ...got]);
              step++;
            } else if (o.kind === "share") {
              const candidates = model.kvPages();
              if (candidates.length === 0) {
                expect(() => pages.shareKv(o.seq, [0])).toThrow(PageAllocatorError);
                continue;
              }
              const start = o.from % candidates.length;
              const chosen = candidates.slice(start, start + o.count);
              pages.shareKv(o.seq, chosen);
              model.tables.set(o.seq, [...(model.tables.get(o.seq) ?? []), ...chosen]);
            } else if (o.kind === "retain") {
              const table = model.tables.get(o.seq) ?? [];
              const chosen = [...new Set(table)].filter((p) => !model.retained.has(p));
              const some = chosen.slice(0, o.count);
              pages.retain(some);
              for (const p of some) model.retained.add(p);
              // retaining twice, or a page nobody holds, is refused
              if (some[0] !== undefined) {
                expect(() => pages.retain([some[0] as number])).toThrow(PageAllocatorError);
              }
            } else if (o.kind === "unretain") {
              const list = [...model.retained].sort((a, b) => a - b);
              if (list.length === 0) {
                expect(() => pages.unretain([0], null)).toThrow(PageAllocatorError);
                continue;
              }
              const start = o.pick % list.length;
              const some = list.slice(start, start + o.count);
              pages.unretain(some, fence(o.fenced));
              for (const p of some) model.retained.delete(p);
            } else if (o.kind === "freeSeq") {
              model.tables.delete(o.seq);
              pages.freeSeq(o.seq, fence(o.fenced));
              expect(pages.seqPages(o.seq)).toEqual([]);
            } else if (o.kind === "adapter") {
              if (model.adapters.has(o.adapter)) {
                expect(() => pages.allocateAdapter(o.adapter, o.pages)).toThrow(PageAllocatorError);
                continue;
              }
              if (!pages.canAllocateAdapter(o.pages)) continue;
              const got = [...pages.allocateAdapter(o.adapter, o.pages)];
              const taken = new Set([...model.kvPages(), ...model.adapterPages()]);
              for (const p of got) expect(taken.has(p)).toBe(false);
              model.adapters.set(o.adapter, got);
            } else if (o.kind === "freeAdapter") {
              if (!model.adapters.has(o.adapter)) {
                expect(() => pages.freeAdapter(o.adapter, null)).toThrow(PageAllocatorError);
                continue;
              }
              model.adapters.delete(o.adapter);
              pages.freeAdapter(o.adapter, fence(o.fenced));
            } else if (completed + 1 < step) {
              completed++;
              pages.settle(completed);
            }
            // every page in exactly one state and inside its share, counts = page tables
            pages.checkInvariants();
            const held = model.held();
            for (const p of held) expect(pages.refCount(p)).toBe(model.refs(p));
            const s = pages.stats();
            expect(s.kv).toBe(held.size);
            expect(s.cached).toBe([...model.retained].filter((p) => !held.has(p)).length);
            expect(s.adapter).toBe(model.adapterPages().size);
            expect(s.free + s.fenced + s.kv + s.cached + s.adapter).toBe(total);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("shares pages by reference count and keeps retained ones cached once no seq holds them", () => {
    const pages = new PageAllocator(12);
    const own = [...pages.allocateKv(0, 3)]; // 6 pages
    pages.retain(own.slice(0, 4)); // a block of 2 tokens the prefix cache keeps
    pages.shareKv(1, own.slice(0, 4));
    expect(pages.refCount(own[0] as number)).toBe(2);
    pages.freeSeq(0, null);
    // seq 1 still holds the block; seq 0's private tail is free
    expect(pages.stats()).toMatchObject({ free: 8, kv: 4, cached: 0 });
    pages.freeSeq(1, 3);
    expect(pages.stats()).toMatchObject({ free: 8, kv: 0, cached: 4, fenced: 0 });
    // a new seq hits the cached block
    pages.shareKv(2, own.slice(0, 4));
    expect(pages.stats()).toMatchObject({ kv: 4, cached: 0 });
    pages.freeSeq(2, null);
    pages.unretain(own.slice(0, 4), 5); // evicted while step 5 may still read it
    expect(pages.stats()).toMatchObject({ cached: 0, fenced: 4, free: 8 });
    expect(() => pages.shareKv(3, own.slice(0, 1))).toThrow(PageAllocatorError);
    pages.checkInvariants();
  });

  it("keeps fenced pages from adapter loads until their step completes, but lends them to KV", () => {
    const pages = new PageAllocator(4);
    pages.allocateKv(0, 2);
    pages.freeSeq(0, 5);
    expect(pages.stats()).toMatchObject({ free: 0, fenced: 4 });
    expect(pages.canAllocateAdapter(1)).toBe(false);
    expect(pages.canAllocateKv(2)).toBe(true);
    pages.settle(4);
    expect(pages.canAllocateAdapter(4)).toBe(false);
    pages.settle(5);
    expect(pages.canAllocateAdapter(4)).toBe(true);
    pages.checkInvariants();
  });

  it("rejects bad sizes and frees of pages it did not give", () => {
    expect(() => new PageAllocator(0)).toThrow(PageAllocatorError);
    const pages = new PageAllocator(10);
    expect(() => pages.allocateKv(0, 0)).toThrow(PageAllocatorError);
    expect(() => pages.allocateKv(0, 6)).toThrow(PageAllocatorError);
    expect(() => pages.freeAdapter(3, null)).toThrow(PageAllocatorError);
    pages.freeSeq(9, null); // a seq with no pages holds nothing to free
    pages.checkInvariants();
  });

  it("starts over with another pool size after a reset", () => {
    const pages = new PageAllocator(10);
    pages.allocateKv(0, 3);
    pages.allocateAdapter(1, 2);
    pages.reset(20);
    expect(pages.stats()).toEqual({
      total: 20,
      free: 20,
      fenced: 0,
      kv: 0,
      cached: 0,
      adapter: 0,
    });
    pages.checkInvariants();
  });

  it("split pool (no-unify-mem): adapter pages never become KV, nor KV pages adapter pages", () => {
    const pages = new PageAllocator(20, { adapterFraction: 0.4 });
    expect([pages.adapterCapacity, pages.kvCapacity, pages.unified]).toEqual([8, 12, false]);
    pages.allocateAdapter(1, 8);
    expect(pages.canAllocateAdapter(1)).toBe(false);
    pages.allocateKv(0, 6); // the whole KV share
    expect(pages.canAllocateKv(1)).toBe(false);
    pages.freeAdapter(1, null); // 8 pages free, but only for adapters
    expect(pages.stats()).toMatchObject({ free: 8, kv: 12, adapter: 0 });
    expect(pages.canAllocateKv(1)).toBe(false);
    expect(pages.kvRoom()).toBe(0);
    pages.freeSeq(0, 3); // fenced KV pages: KV may reuse them, adapters may not even settled
    expect(pages.canAllocateAdapter(9)).toBe(false);
    pages.settle(3);
    expect(pages.canAllocateAdapter(9)).toBe(false);
    expect(pages.canAllocateKv(6)).toBe(true);
    expect(pages.fitsTogether(8, 12)).toBe(true);
    expect(pages.fitsTogether(9, 2)).toBe(false);
    pages.checkInvariants();
    const unified = new PageAllocator(20);
    unified.allocateAdapter(1, 8);
    unified.freeAdapter(1, null);
    expect(unified.canAllocateKv(10)).toBe(true); // the same pages serve KV when unified
    expect(unified.fitsTogether(9, 11)).toBe(true);
  });

  it("split pool: each share keeps a page; bad fractions and pools too small are refused", () => {
    const tiny = new PageAllocator(2, { adapterFraction: 0.01 });
    expect([tiny.adapterCapacity, tiny.kvCapacity]).toEqual([1, 1]);
    expect(() => new PageAllocator(1, { adapterFraction: 0.5 })).toThrow(PageAllocatorError);
    for (const f of [0, 1, -0.1, Number.NaN]) {
      expect(() => new PageAllocator(10, { adapterFraction: f })).toThrow(PageAllocatorError);
    }
    const pages = new PageAllocator(10, { adapterFraction: 0.5 });
    pages.allocateKv(0, 2);
    pages.reset(30); // the same split of the new size
    expect([pages.adapterCapacity, pages.kvCapacity]).toEqual([15, 15]);
    pages.checkInvariants();
  });
});
