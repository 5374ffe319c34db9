import { describe, expect, it } from "vitest";
import type { RequestOutput } from "./output.ts";
import {
  createEngine,
  createRequests,
  drive,
  referenceTokens,
  SimulatedExecutor,
  testModel,
  tokensOf,
} from "./testing.ts";

describe("probation: the suspects of an executor failure come back one at a time", () => {
  it("runs no two suspects in one step before each has passed, and every request ends as alone", () => {
    for (const maxInFlightSteps of [1, 2, 3]) {
      const model = testModel();
      const engine = createEngine({ maxInFlightSteps, maxNumBatchedTokens: 16 }, {});
      const requests = createRequests({
        numRequests: 8,
        tenant: (i) => `t${i % 3}`,
        promptLength: (i) => 6 + 5 * i,
        maxTokens: () => 6,
      });
      for (const req of requests) engine.addRequest(req);
      const suspects = ["r1", "r2", "r4", "r7"];
      let crashed = false;
      const passed = new Set<string>();
      const probationers: string[] = [];
      let stepsWithASuspect = 0;
      const outputs = drive(engine, new SimulatedExecutor(model), {
        crashAtStep: 3,
        suspects,
        onOutput: (output: RequestOutput) => {
          if (crashed && output.newTokenIds.length > 0) passed.add(output.id);
        },
        afterSchedule: ({ plan }) => {
          if (engine.stats().suspects > 0) crashed = true;
          const probationer = engine.probationer;
          if (probationer !== null && probationers.at(-1) !== probationer) {
            probationers.push(probationer);
          }
          if (plan === null || !crashed) return;
          const unproven = engine
            .requestIdsOf(plan.seqIds)
            .filter((id) => suspects.includes(id) && !passed.has(id));
          expect(unproven.length, `step ${plan.stepId}: ${unproven}`).toBeLessThanOrEqual(1);
          if (unproven.length === 1) {
            expect(unproven[0]).toBe(probationer);
            stepsWithASuspect++;
          }
        },
      });
      expect(probationers).toEqual(suspects);
      expect(stepsWithASuspect).toBeGreaterThanOrEqual(suspects.length);
      for (const req of requests) {
        expect(tokensOf(outputs.get(req.id)), req.id).toEqual(referenceTokens(req, model));
        expect(outputs.get(req.id)?.at(-1)?.finishReason).toBe("length");
      }
      expect(engine.stats().suspects).toBe(0);
    }
  });

  it("keeps suspects in line out of the queue, counts them as waiting, and lets them finish there", () => {
    const engine = createEngine({}, {});
    const requests = createRequests({ numRequests: 3, tenant: (i) => `t${i}` });
    for (const req of requests) engine.addRequest(req);
    engine.schedule(0);
    engine.executorRestarted(testModel(), ["r0", "r1", "r2"]);
    expect(engine.probationer).toBe("r0");
    expect(engine.stats()).toMatchObject({ waiting: 3, running: 0, suspects: 3 });
    expect(engine.stats().tenants.t1?.waiting).toBe(1);
    // the first plan holds the one on probation only
    const plan = engine.schedule(0).plan;
    expect(engine.requestIdsOf(plan?.seqIds ?? new Uint32Array())).toEqual(["r0"]);
    // one in line is aborted: it leaves the line; the one on probation fails: the next one's turn
    expect(engine.abort("r1", "abort")?.finishReason).toBe("abort");
    expect(engine.fail("r0", "given up")).toMatchObject({
      finishReason: "error",
      error: "given up",
    });
    expect(engine.probationer).toBe("r2");
    expect(engine.stats()).toMatchObject({ waiting: 1, suspects: 1 });
    expect(engine.fail("nope", "x")).toBeNull();
  });

  it("finishes a suspect in line at its deadline", () => {
    const engine = createEngine({}, {});
    const requests = createRequests({ numRequests: 2, deadlineMs: (i) => (i === 1 ? 50 : null) });
    for (const req of requests) engine.addRequest(req);
    engine.schedule(0);
    engine.executorRestarted(testModel(), ["r0", "r1"]);
    const { finished } = engine.schedule(100);
    expect(finished.map((o) => [o.id, o.finishReason])).toEqual([["r1", "deadline"]]);
    expect(engine.stats().suspects).toBe(1);
  });
});
