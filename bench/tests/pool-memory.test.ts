// bench/src/pool-memory.ts at tiny shapes: the real Engine's page accounting against the
// engine's SimulatedExecutor, unified pool vs the no-unifymem split.
import { describe, expect, it } from "vitest";
import { adapterPages, poolMemory, poolPages, SHAPES } from "../src/pool-memory.ts";

describe("pool memory (tiny shapes)", () => {
  const result = poolMemory(SHAPES.smoke, 0.5);
  const unified = result.runs.filter((r) => r.sharing === "unified");
  const split = result.runs.filter((r) => r.sharing === "split");

  it("fills the pages the batch's KV leaves free with adapters, as many as arithmetic allows", () => {
    expect(result.pool.pages).toBe(poolPages(SHAPES.smoke));
    for (const run of unified.filter((r) => r.ranks.length === 1)) {
      const pages = adapterPages(SHAPES.smoke, run.ranks[0] as number).pages;
      expect(run.batchResidentAtOnce).toBe(true);
      expect(run.peakKvPages).toBe(result.batchKvPages);
      expect(run.residentAdaptersAtPeak).toBe(run.expectedResident);
      expect(run.expectedResident).toBe(Math.floor((result.pool.pages - run.peakKvPages) / pages));
      // Nothing is left over but less than one more adapter.
      expect(run.freePagesAtPeak).toBeLessThan(pages);
    }
  });

  it("moves page ids between KV and adapters only in the unified pool", () => {
    // Loads leave the running requests' KV to come alone, so ids move mostly from the
    // batch's KV to adapters once it ends, rarely the other way.
    for (const run of unified) expect(run.kvPagesReusedForAdapters).toBeGreaterThan(0);
    for (const run of split) {
      expect(run.adapterPagesReusedAsKv).toBe(0);
      expect(run.kvPagesReusedForAdapters).toBe(0);
      expect(run.residentAdaptersAtPeak).toBeLessThanOrEqual(run.expectedResident);
    }
  });

  it("strands free KV pages in the split pool: more fragmentation than unified", () => {
    for (const [u, s] of unified.map((run, k) => [run, split[k]] as const)) {
      expect(s?.fragmentation).toBeGreaterThan(u.fragmentation);
    }
    expect(result.fragmentation).toBe(Math.max(...unified.map((r) => r.fragmentation)));
    // At tiny shapes k/v's Bᵀ rows (32 long) fill half a 64-wide page: row tails dominate.
    expect(result.adapterLayout[0]?.tailWaste).toBeCloseTo(0.125);
  });
});
