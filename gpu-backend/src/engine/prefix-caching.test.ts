// The engine's prefix caching, case by case (engine.test.ts's property covers it at random).
import { describe, expect, it } from "vitest";
import { StepFlag, type StepPlan } from "../protocol/messages.ts";
import type { EngineRequest } from "./request.ts";
import {
  createEngine,
  createRequests,
  drive,
  referenceTokens,
  SimulatedExecutor,
  testModel,
  tokensOf,
} from "./testing.ts";

const model = testModel();
const prompt = (length: number, from = 2) => Array.from({ length }, (_, k) => from + (k % 60));

/** One request of `tokens`; `overrides` for tenant, salt, adapter. */
function request(id: string, tokens: number[], overrides: Partial<EngineRequest> = {}) {
  const [req] = createRequests({ numRequests: 1, prompt: () => tokens, maxTokens: () => 4 });
  return { ...(req as EngineRequest), id, ...overrides };
}

describe("prefix caching", () => {
  it("serves a conversation's next turn from the blocks of the one before", () => {
    const engine = createEngine({ prefixBlockSize: 4, maxInFlightSteps: 1 });
    const sim = new SimulatedExecutor(model);
    const turn1 = request("turn1", prompt(10));
    engine.addRequest(turn1);
    const first = drive(engine, sim);
    expect(first.get("turn1")?.at(-1)?.numCachedTokens).toBe(0);
    // 10 prompt + 4 output tokens, KV for 13: three full blocks of 4 stay cached.
    expect(engine.stats().pages).toMatchObject({ kv: 0, cached: 3 * 4 * 2 });
    const history = [...turn1.promptTokenIds, ...referenceTokens(turn1, model), 5, 6];
    const turn2 = request("turn2", history);
    engine.addRequest(turn2);
    const plan = engine.schedule(0).plan as StepPlan;
    expect(plan.flags[0]).toBe(StepFlag.new | StepFlag.sample);
    expect([plan.numCached[0], plan.numNewTokens[0]]).toEqual([12, 4]);
    expect([...plan.prefixTokenIds]).toEqual(history.slice(0, 12));
    expect(plan.prefixKvPages.length).toBe(24);
    sim.submit(plan);
    const outputs = drive(engine, sim);
    expect(tokensOf(outputs.get("turn2"))).toEqual(referenceTokens(turn2, model));
    expect(outputs.get("turn2")?.at(-1)?.numCachedTokens).toBe(12);
    expect(engine.stats().prefixCache).toMatchObject({
      queries: 2,
      queryTokens: 10 + 16,
      hitTokens: 12,
    });
  });

  it("shares the prompt's pages among n > 1 choices admitted in one step", () => {
    const engine = createEngine({ prefixBlockSize: 4, maxInFlightSteps: 1 });
    const sim = new SimulatedExecutor(model);
    // 10 tokens: two full blocks (8) to share; 8 tokens: all but the last (7), so the last
    // block is taken for its first 3 tokens only.
    const choices = [0, 1, 2].map((i) => request(`c${i}`, prompt(10)));
    const exact = [0, 1].map((i) => request(`e${i}`, prompt(8, 30)));
    for (const req of [...choices, ...exact]) engine.addRequest(req);
    const plan = engine.schedule(0).plan as StepPlan;
    const bySeq = (values: Int32Array) =>
      [0, 1, 2, 3, 4].map((id) => values[plan.seqIds.indexOf(id)]);
    expect(bySeq(plan.numCached)).toEqual([0, 8, 8, 0, 7]);
    expect(bySeq(plan.numNewTokens)).toEqual([10, 2, 2, 8, 1]);
    expect(plan.prefixTokenIds.length).toBe(8 + 8 + 7);
    // 10 + 2 + 2 + 8 + 1 tokens of pages, not 10 × 3 + 8 × 2
    expect(engine.stats().pages.kv).toBe(2 * 23);
    sim.submit(plan);
    const outputs = drive(engine, sim);
    for (const req of [...choices, ...exact]) {
      expect(tokensOf(outputs.get(req.id))).toEqual(referenceTokens(req, model));
    }
    expect(outputs.get("c1")?.at(-1)?.numCachedTokens).toBe(8);
    expect(outputs.get("e1")?.at(-1)?.numCachedTokens).toBe(7);
  });

  it("never shares across cache salts (tenants), adapters, adapter contents or base and adapter", () => {
    const tokens = prompt(12);
    const lora = { name: "lora1", path: "/adapters/lora1", sha256: "sha-1" };
    // What ran before (tenant t0), and the request that must not find its blocks.
    const cases: [string, EngineRequest["adapter"], Partial<EngineRequest>][] = [
      ["tenant B", null, { tenant: "B", cacheSalt: "B" }],
      ["same tenant, another salt", null, { cacheSalt: "opted-out" }],
      ["an adapter on a base prompt", null, { adapter: lora }],
      ["the base model on an adapter's", lora, { adapter: null }],
      ["the adapter re-uploaded", lora, { adapter: { ...lora, sha256: "sha-2" } }],
      ["another adapter", lora, { adapter: { ...lora, name: "lora2", path: "/adapters/lora2" } }],
    ];
    for (const [what, before, overrides] of cases) {
      const engine = createEngine({ prefixBlockSize: 4 });
      const sim = new SimulatedExecutor(model);
      engine.addRequest(request("before", tokens, { adapter: before }));
      drive(engine, sim);
      engine.addRequest(request("again", tokens, { adapter: before }));
      // 12 tokens: all but the last come from the cache
      expect(drive(engine, sim).get("again")?.at(-1)?.numCachedTokens, what).toBe(11);
      const req = request(what, tokens, overrides);
      engine.addRequest(req);
      const outputs = drive(engine, sim);
      expect(tokensOf(outputs.get(what)), what).toEqual(referenceTokens(req, model));
      expect(outputs.get(what)?.at(-1)?.numCachedTokens, what).toBe(0);
    }
  });

  it("evicts cached blocks for new requests when the pool is full, least recently used first", () => {
    // 60 pages. "old" (13 + 4 tokens, KV of 16) leaves 4 blocks of 4 (32 pages) cached,
    // "recent" (5 + 4, KV of 8) 2 blocks (16 pages): 12 pages stay free.
    const engine = createEngine({ prefixBlockSize: 4, maxInFlightSteps: 1 }, { numPages: 60 });
    const sim = new SimulatedExecutor(testModel({ numPages: 60 }));
    const old = request("old", prompt(13, 2));
    const recent = request("recent", prompt(5, 40));
    for (const req of [old, recent]) {
      engine.addRequest(req);
      drive(engine, sim);
    }
    expect(engine.stats().pages).toMatchObject({ cached: 48, free: 12, kv: 0 });
    // "big" takes 28 pages for its prompt and 6 for its outputs: old's last three blocks
    // go (a block's children before it), recent's stay.
    const big = request("big", prompt(14, 20));
    engine.addRequest(big);
    const outputs = drive(engine, sim, { afterSchedule: () => engine.checkInvariants() });
    expect(tokensOf(outputs.get("big"))).toEqual(referenceTokens(big, model));
    expect(engine.stats().prefixCache.evictions).toBe(3);
    const recentTurn = [...recent.promptTokenIds, ...referenceTokens(recent, model).slice(0, 3)];
    engine.addRequest(request("recent-again", recentTurn));
    expect(drive(engine, sim).get("recent-again")?.at(-1)?.numCachedTokens).toBe(7);
    // its outputs took the last free pages and then old's first block, the oldest
    expect(engine.stats().prefixCache.evictions).toBe(4);
    engine.addRequest(request("old-again", old.promptTokenIds));
    expect(drive(engine, sim).get("old-again")?.at(-1)?.numCachedTokens).toBe(0);
  });

  it("starts empty after an executor restart", () => {
    const engine = createEngine({ prefixBlockSize: 4 });
    const sim = new SimulatedExecutor(model);
    engine.addRequest(request("a", prompt(12)));
    drive(engine, sim);
    expect(engine.stats().prefixCache.blocks).toBe(3);
    sim.crash();
    engine.executorRestarted(model);
    expect(engine.stats().prefixCache.blocks).toBe(0);
    expect(engine.stats().pages).toMatchObject({ cached: 0, free: model.numPages });
    engine.addRequest(request("b", prompt(12)));
    const outputs = drive(engine, sim);
    expect(outputs.get("b")?.at(-1)?.numCachedTokens).toBe(0);
  });

  it("with --enable-prefix-caching false, computes every prompt and keeps nothing", () => {
    const engine = createEngine({ prefixBlockSize: 4, enablePrefixCaching: false });
    const sim = new SimulatedExecutor(model);
    for (const id of ["a", "b"]) {
      engine.addRequest(request(id, prompt(12)));
      const outputs = drive(engine, sim);
      expect(outputs.get(id)?.at(-1)?.numCachedTokens).toBe(0);
      expect(engine.stats().pages.cached).toBe(0);
    }
    expect(engine.stats().prefixCache).toMatchObject({ queries: 2, hitTokens: 0, blocks: 0 });
  });

  it("lets an adapter load take cached KV blocks: one policy over both kinds", () => {
    // 40 pages: a 16-token request leaves 4 blocks (32 pages) cached; lora0 takes 16.
    const pool = { numPages: 40 };
    const engine = createEngine({ prefixBlockSize: 4, maxInFlightSteps: 1 }, pool);
    const sim = new SimulatedExecutor(testModel(pool), () => 16);
    const base = { ...request("base", prompt(17)), maxTokens: 1 };
    engine.addRequest(base);
    drive(engine, sim);
    expect(engine.stats().pages).toMatchObject({ cached: 32, free: 8 });
    const withAdapter = request("lora", prompt(2, 50), {
      adapter: { name: "lora0", path: "/adapters/lora0", sha256: "s" },
    });
    engine.addRequest(withAdapter);
    const outputs = drive(engine, sim);
    expect(tokensOf(outputs.get("lora"))).toEqual(referenceTokens(withAdapter, model));
    // lora0's 16 pages: the 8 free ones and one block; its request's 2 + 3 tokens: two more
    expect(engine.stats().prefixCache.evictions).toBe(3);
    expect(engine.stats().adapters.loads).toBe(1);
  });
});
