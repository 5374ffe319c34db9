import { describe, expect, it } from "vitest";
import { FairShare } from "./fair-share.ts";
import type { EngineRequest } from "./request.ts";
import { createEngine, createRequests, drive, SimulatedExecutor, testModel } from "./testing.ts";

const PROMPT_WEIGHT = 1;
const OUTPUT_WEIGHT = 2;

/** A seeded linear congruential generator: skewed loads that are the same on every run. */
function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function servedCost(engine: ReturnType<typeof createEngine>, tenant: string): number {
  const t = engine.stats().tenants[tenant];
  return t === undefined ? 0 : PROMPT_WEIGHT * t.promptTokens + OUTPUT_WEIGHT * t.outputTokens;
}

/**
 * "heavy" sends `skew` times the requests of "light", interleaved in arrival order, with
 * random prompts and lengths up to 32; with `maxLoras`, each tenant's requests name 4
 * adapters of its own (more than the pool holds). Returns the largest gap between their
 * served costs while both were backlogged, and fair-share.ts's bound for it.
 */
function skewedLoad(o: { seed: number; maxNumSeqs: number; skew: number; maxLoras?: number }) {
  const maxPrompt = 32;
  const maxTokens = 32;
  const random = lcg(o.seed);
  const shape = (tenant: string, n: number): EngineRequest[] =>
    createRequests({
      numRequests: n,
      idPrefix: `${tenant}-`,
      tenant: () => tenant,
      adapter: o.maxLoras === undefined ? undefined : () => `${tenant}-${Math.floor(random() * 4)}`,
      promptLength: () => 4 + Math.floor(random() * (maxPrompt - 3)),
      maxTokens: () => 1 + Math.floor(random() * maxTokens),
    });
  const engine = createEngine({
    maxNumSeqs: o.maxNumSeqs,
    maxNumBatchedTokens: 256,
    vtcPromptWeight: PROMPT_WEIGHT,
    vtcOutputWeight: OUTPUT_WEIGHT,
    ...(o.maxLoras === undefined ? {} : { maxLoras: o.maxLoras }),
  });
  const heavy = shape("heavy", 20 * o.skew);
  const light = shape("light", 20);
  for (let i = 0; i < heavy.length; i++) {
    engine.addRequest(heavy[i] as EngineRequest);
    if (i % o.skew === 0) engine.addRequest(light[i / o.skew] as EngineRequest);
  }
  let worst = 0;
  let backloggedSteps = 0;
  drive(engine, new SimulatedExecutor(testModel()), {
    loadSteps: 2,
    afterSchedule: () => {
      const tenants = engine.stats().tenants;
      if ((tenants.light?.waiting ?? 0) === 0 || (tenants.heavy?.waiting ?? 0) === 0) return;
      backloggedSteps++;
      worst = Math.max(worst, Math.abs(servedCost(engine, "heavy") - servedCost(engine, "light")));
    },
  });
  // fair-share.ts: w_p × longest prompt + maxNumSeqs × w_q × largest maxTokens.
  const bound = PROMPT_WEIGHT * maxPrompt + o.maxNumSeqs * OUTPUT_WEIGHT * maxTokens;
  return { worst, backloggedSteps, bound };
}

describe("FairShare (VTC)", () => {
  it("picks the least-served tenant and lifts a newcomer to the least active counter", () => {
    const vtc = new FairShare(PROMPT_WEIGHT, OUTPUT_WEIGHT);
    vtc.activate("a", []);
    vtc.charge("a", 100, 10);
    expect(vtc.counter("a")).toBe(120);
    vtc.activate("b", ["a"]);
    expect(vtc.counter("b")).toBe(120); // no credit for the time it was away
    vtc.charge("b", 1, 0);
    expect(vtc.pickTenant(["a", "b"])).toBe("a");
    vtc.deactivate("a");
    vtc.deactivate("b");
    vtc.activate("c", []); // alone: starts at the counter of the last tenant that left
    expect(vtc.counter("c")).toBe(121);
  });

  it.each([
    { seed: 1, maxNumSeqs: 8, skew: 10 },
    { seed: 2, maxNumSeqs: 4, skew: 10 },
    { seed: 3, maxNumSeqs: 16, skew: 30 },
    { seed: 4, maxNumSeqs: 2, skew: 3 },
    { seed: 5, maxNumSeqs: 32, skew: 10 },
  ])("keeps backlogged tenants' served tokens within the bound under skewed load %o", (load) => {
    const { worst, backloggedSteps, bound } = skewedLoad(load);
    expect(backloggedSteps).toBeGreaterThan(5);
    expect(worst).toBeLessThanOrEqual(bound);
  });
});

describe("FairShare in the engine", () => {
  it.each([
    { seed: 1, maxNumSeqs: 8, skew: 10, maxLoras: 2 },
    { seed: 2, maxNumSeqs: 4, skew: 10, maxLoras: 3 },
    { seed: 3, maxNumSeqs: 16, skew: 30, maxLoras: 2 },
    { seed: 4, maxNumSeqs: 2, skew: 3, maxLoras: 2 },
    { seed: 5, maxNumSeqs: 32, skew: 10, maxLoras: 4 },
    { seed: 6, maxNumSeqs: 8, skew: 5, maxLoras: 1 },
  ])("keeps the bound when tenants wait for adapters in a tight pool %o", (load) => {
    // A tenant's requests often all wait for a load; the other is admitted past it only
    // within the bound (scheduler.ts #admit).
    const { worst, backloggedSteps, bound } = skewedLoad(load);
    expect(backloggedSteps).toBeGreaterThan(5);
    expect(worst).toBeLessThanOrEqual(bound);
  });

  it("does not let a newcomer cash in the time it was away", () => {
    const maxNumSeqs = 4;
    const engine = createEngine({ maxNumSeqs, maxNumBatchedTokens: 256 });
    const early = createRequests({ numRequests: 200, idPrefix: "early-", tenant: () => "early" });
    for (const req of early) engine.addRequest(req);
    const late = createRequests({ numRequests: 40, idPrefix: "late-", tenant: () => "late" });
    let start: { early: number; late: number } | null = null;
    let worst = 0;
    drive(engine, new SimulatedExecutor(testModel()), {
      afterSchedule: () => {
        const tenants = engine.stats().tenants;
        if (start === null && (tenants.early?.outputTokens ?? 0) >= 400) {
          // "early" has been served alone for a while; now "late" arrives with a backlog.
          for (const req of late) engine.addRequest(req);
          start = { early: servedCost(engine, "early"), late: 0 };
        }
        if (start === null || (tenants.late?.waiting ?? 0) === 0) return;
        const earlyGain = servedCost(engine, "early") - start.early;
        const lateGain = servedCost(engine, "late") - start.late;
        worst = Math.max(worst, Math.abs(earlyGain - lateGain));
      },
    });
    expect(start).not.toBeNull();
    // Same bound as above, from the moment "late" arrived (prompts 8, maxTokens 8).
    expect(worst).toBeLessThanOrEqual(PROMPT_WEIGHT * 8 + maxNumSeqs * OUTPUT_WEIGHT * 8);
  });
});
