import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { PAGES_PER_TOKEN, PageAllocator, type PoolSharing } from "./allocator.ts";
import { PageAllocatorError } from "./errors.ts";

type Op =
  | { kind: "kv"; seq: number; tokens: number }
  | { kind: "freeSeq"; seq: number; fenced: boolean }
  | { kind: "adapter"; adapter: number; pages: number }
  | { kind: "freeAdapter"; adapter: number; fenced: boolean }
  | { kind: "stepDone" };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("kv"), seq: fc.nat(7), tokens: fc.integer({ min: 1, max: 20 }) }),
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

describe("PageAllocator", () => {
  it("never double-allocates or leaks over random alloc/free/evict sequences", () => {
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
          // The model: who holds each page, as the allocator's users see it.
          const owner = new Map<number, string>();
          const adapters = new Set<number>();
          let step = 0; // steps sent; `stepDone` completes the oldest
          let completed = -1;
          for (const o of ops) {
            if (o.kind === "kv") {
              const ok = pages.canAllocateKv(o.tokens);
              // What the model says KV may still take: the whole pool's free pages, or the
              // KV share's when split (adapter pages never count).
              const kvHeld = [...owner.values()].filter((w) => w.startsWith("s")).length;
              const room = share === "unified" ? total - owner.size : kvCap - kvHeld;
              expect(ok).toBe(o.tokens * PAGES_PER_TOKEN <= room);
              if (!ok) {
                expect(() => pages.allocateKv(o.seq, o.tokens)).toThrow(PageAllocatorError);
                continue;
              }
              const got = pages.allocateKv(o.seq, o.tokens);
              expect(got.length).toBe(o.tokens * PAGES_PER_TOKEN);
              for (const p of got) {
                expect(owner.has(p)).toBe(false);
                owner.set(p, `s${o.seq}`);
              }
              step++;
            } else if (o.kind === "freeSeq") {
              const table = pages.seqPages(o.seq);
              for (const p of table) owner.delete(p);
              pages.freeSeq(o.seq, o.fenced && step > completed + 1 ? step - 1 : null);
              expect(pages.seqPages(o.seq)).toEqual([]);
            } else if (o.kind === "adapter") {
              if (adapters.has(o.adapter)) {
                expect(() => pages.allocateAdapter(o.adapter, o.pages)).toThrow(PageAllocatorError);
                continue;
              }
              if (!pages.canAllocateAdapter(o.pages)) continue;
              for (const p of pages.allocateAdapter(o.adapter, o.pages)) {
                expect(owner.has(p)).toBe(false);
                owner.set(p, `a${o.adapter}`);
              }
              adapters.add(o.adapter);
            } else if (o.kind === "freeAdapter") {
              if (!adapters.has(o.adapter)) {
                expect(() => pages.freeAdapter(o.adapter, null)).toThrow(PageAllocatorError);
                continue;
              }
              for (const [p, who] of owner) if (who === `a${o.adapter}`) owner.delete(p);
              adapters.delete(o.adapter);
              pages.freeAdapter(o.adapter, o.fenced && step > completed + 1 ? step - 1 : null);
            } else if (completed + 1 < step) {
              completed++;
              pages.settle(completed);
            }
            pages.checkInvariants(); // also: every page inside its share when split
            const s = pages.stats();
            expect(s.kv + s.adapter).toBe(owner.size);
            expect(s.free + s.fenced + s.kv + s.adapter).toBe(total);
          }
        },
      ),
      { numRuns: 300 },
    );
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
    expect(pages.stats()).toEqual({ total: 20, free: 20, fenced: 0, kv: 0, adapter: 0 });
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
