// Admission around adapters, timed (issue 21 item 2, issue 20 item 9): a request whose
// adapter is not resident holds nobody back, a cold adapter's first token costs one stage
// and one load, and a tight pool loads each adapter about as often as serving the queue
// in order must.
import { describe, expect, it } from "vitest";
import type { EngineConfig } from "./config.ts";
import type { EngineRequest } from "./request.ts";
import { createEngine, createRequests, SimulatedExecutor, testModel } from "./testing.ts";
import { type RequestTimes, runTimed, type TimedLoopOptions } from "./timed-loop.ts";

/** A seeded linear congruential generator: the same requests on every run. */
function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * Belady's MIN: the fewest loads that serve `names` in this order from `slots` pool slots
 * (on a miss, evict the adapter needed furthest ahead). No policy that serves the queue
 * in order loads less; one that must leave pinned adapters alone may load more.
 */
function beladyLoads(names: readonly string[], slots: number): number {
  const pool = new Set<string>();
  let loads = 0;
  for (const [i, name] of names.entries()) {
    if (pool.has(name)) continue;
    loads++;
    if (pool.size === slots) {
      const nextUse = (a: string) => {
        const at = names.indexOf(a, i + 1);
        return at === -1 ? Number.POSITIVE_INFINITY : at;
      };
      const victim = [...pool].reduce((a, b) => (nextUse(b) > nextUse(a) ? b : a));
      pool.delete(victim);
    }
    pool.add(name);
  }
  return loads;
}

const latencies: Omit<TimedLoopOptions, "maxConcurrency"> = {
  stageThreads: 4,
  stageMs: () => 5,
  loadMs: () => 1,
  stepMs: () => 10,
};

function runAll(
  config: Partial<EngineConfig>,
  requests: EngineRequest[],
  options: Partial<TimedLoopOptions> = {},
  arrivalMs: (i: number) => number = () => 0,
) {
  const model = testModel();
  const engine = createEngine(config, model);
  const run = runTimed(
    engine,
    new SimulatedExecutor(model),
    requests.map((req, i) => ({ req, arrivalMs: arrivalMs(i) })),
    { ...latencies, maxConcurrency: null, ...options },
  );
  const byId = new Map(run.requests.map((r) => [r.id, r]));
  return { engine, run, times: (id: string) => byId.get(id) as RequestTimes };
}

describe("admission around adapters", () => {
  it("holds back no request that can start behind a burst of cold adapters, past the prefetch window", () => {
    // 12 requests on 12 cold adapters, then a base request and one on an adapter that a
    // request before the burst made resident; stages are slow and one at a time.
    const requests = createRequests({
      numRequests: 15,
      maxTokens: () => 4,
      adapter: (i) => (i === 0 || i === 14 ? "warm" : i === 13 ? null : `cold${i}`),
    });
    const { run, times } = runAll(
      { prefetchWindow: 4, maxInFlightSteps: 2 },
      requests,
      {
        stageThreads: 1,
        stageMs: (name) => (name === "warm" ? 5 : 200),
      },
      (i) => (i === 0 ? 0 : 50),
    );
    // Sent at 50 ms behind 12 stages of 200 ms: both start within a few steps instead.
    expect(times("r13").firstTokenMs as number).toBeLessThan(50 + 5 * 10);
    expect(times("r14").firstTokenMs as number).toBeLessThan(50 + 5 * 10);
    // The burst's stages follow the queue's order, one at a time.
    const stages = run.adapterOps.filter((o) => o.kind === "stage" && o.name !== "warm");
    expect(stages.map((o) => o.name)).toEqual(requests.slice(1, 13).map((r) => r.adapter?.name));
  });

  it("gives a cold adapter its first token after one stage and one load, however many arrive", () => {
    // 4 requests on 4 cold adapters at once beside 60 running base requests, 4 stage threads,
    // 3 steps in flight: each waits for its own stage and load, not for one another's, and
    // its load follows its stage at once (Engine.prefetch between steps).
    const stageMs = 63; // done between two step results
    const loadMs = 3;
    const stepMs = 10;
    const requests = createRequests({
      numRequests: 64,
      maxTokens: (i) => (i < 60 ? 40 : 4),
      adapter: (i) => (i < 60 ? null : `cold${i}`),
    });
    const { run, times } = runAll(
      { maxInFlightSteps: 3 },
      requests,
      {
        stageMs: () => stageMs,
        loadMs: () => loadMs,
        stepMs: () => stepMs,
      },
      (i) => (i < 60 ? 0 : 100),
    );
    for (const id of ["r60", "r61", "r62", "r63"]) {
      const t = times(id);
      const stage = run.adapterOps.find((o) => o.kind === "stage" && o.name === t.adapter);
      const load = run.adapterOps.find((o) => o.kind === "load" && o.name === t.adapter);
      // Staged from its send on, on its own thread; its load sent the moment it was staged
      // and done behind at most the 3 others' (loads run one at a time, ~1 ms on a GPU).
      expect(stage?.startMs).toBe(t.sentMs);
      expect(stage?.doneMs).toBe(t.sentMs + stageMs);
      expect(load?.sentMs).toBe(stage?.doneMs);
      expect(load?.doneMs).toBeLessThanOrEqual(t.sentMs + stageMs + 4 * loadMs);
      // Then admitted at the next schedule (a step at most) and answered after the steps
      // in flight before its own: 3 more.
      expect(t.firstTokenMs as number).toBeLessThanOrEqual(
        (load?.doneMs as number) + (1 + 3) * stepMs,
      );
    }
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8])(
    "loads each adapter of a tight pool about as often as serving the queue in order must (seed %i)",
    (seed) => {
      // #20 item 9: 24 concurrent requests over 7 adapters, --max-loras 3 (one run made
      // 137 loads and 134 evictions).
      const random = lcg(seed);
      const requests = createRequests({
        numRequests: 24,
        adapter: () => `a${Math.floor(random() * 7)}`,
        promptLength: () => 4 + Math.floor(random() * 30),
        maxTokens: () => 4 + Math.floor(random() * 20),
      });
      const names = requests.map((r) => r.adapter?.name as string);
      const distinct = new Set(names).size;
      for (const maxLoras of [2, 3, 4]) {
        // Seats for all: every request of a resident adapter starts at once, so no adapter
        // the queue still needs is ever evicted, and each loads once.
        const roomy = runAll({ maxLoras, maxNumSeqs: 32, maxInFlightSteps: 3 }, requests);
        expect(roomy.engine.stats().adapters.loads).toBe(distinct);
        expect(roomy.engine.stats().adapters.evictions).toBe(distinct - maxLoras);
        // Fewer seats: an adapter the queue needs is evicted only for one needed sooner,
        // the one needed last goes first (MIN's choice), and never before a request used
        // its load. What pins cost over MIN stays under one load per other slot.
        for (const maxNumSeqs of [4, 8]) {
          const tight = runAll({ maxLoras, maxNumSeqs, maxInFlightSteps: 3 }, requests);
          expect(tight.engine.stats().adapters.loads).toBeLessThanOrEqual(
            beladyLoads(names, maxLoras) + maxLoras - 1,
          );
        }
      }
    },
  );

  it("drains a pinned adapter for a blocked one: it takes no new request until evicted", () => {
    // Two slots, both pinned by long requests; "c" waits. "b" is wanted last: it drains,
    // its next request waits, and "c" loads as soon as "b"'s running request ends.
    const requests = createRequests({
      numRequests: 5,
      adapter: (i) => ["a", "b", "c", "a", "b"][i] as string,
      maxTokens: (i) => [30, 10, 4, 4, 4][i] as number,
    });
    const { engine, times } = runAll({ maxLoras: 2, maxInFlightSteps: 1 }, requests, {}, (i) =>
      i < 2 ? 0 : 30,
    );
    const bEnds = times("r1").endMs as number;
    // r4 ("b", sent at 30 ms while "b" was still resident) started only after "c"'s request.
    expect(times("r2").firstTokenMs as number).toBeLessThan(times("r4").firstTokenMs as number);
    expect(times("r2").firstTokenMs as number).toBeLessThanOrEqual(bEnds + 1 + 3 * 10);
    // "a" was never drained: r3 on it started at once.
    expect(times("r3").firstTokenMs as number).toBeLessThan(bEnds);
    expect(engine.stats().adapters.loads).toBe(4); // a, b, c, then b again
  });
});
