// The engine's share of structured outputs: a request's grammar id goes out with each of
// its sequence's rows (also after a preemption), a grammar's end (an EOS) always ends the
// request, and a row whose grammar failed in the executor ends with an error, alone.
import { describe, expect, it } from "vitest";
import type { StepPlan, StepResult } from "../protocol/messages.ts";
import type { EngineRequest } from "./request.ts";
import { GRAMMAR_FAILED } from "./scheduler.ts";
import { createEngine, createRequests, EOS } from "./testing.ts";

/** The result of a plan whose sampling rows drew `tokens`, row by row. */
function resultOf(plan: StepPlan, tokens: number[], grammarErrors: number[] = []): StepResult {
  const sampled = [...plan.seqIds].filter((_, i) => ((plan.flags[i] as number) & 1) === 1);
  return {
    stepId: plan.stepId,
    seqIds: Uint32Array.from(sampled),
    tokens: Int32Array.from(tokens),
    logprobs: new Float32Array(sampled.length).fill(Number.NaN),
    topCounts: new Int32Array(sampled.length),
    topIds: new Int32Array(0),
    topLogprobs: new Float32Array(0),
    grammarErrors: Uint8Array.from({ length: sampled.length }, (_, i) => grammarErrors[i] ?? 0),
    forwardMs: 1,
    sampleMs: 0,
  };
}

describe("grammars in the engine", () => {
  const [constrained, free] = createRequests({ numRequests: 2, maxTokens: () => 5 }).map(
    (req, i): EngineRequest => ({ ...req, grammarId: i === 0 ? 42 : null }),
  ) as [EngineRequest, EngineRequest];

  it("sends each row's grammar id, and an EOS ends a constrained request despite ignore_eos", () => {
    const engine = createEngine({ maxInFlightSteps: 1 });
    engine.addRequest(constrained);
    engine.addRequest(free);
    const plan = engine.schedule(0).plan as StepPlan;
    expect([...plan.grammarIds]).toEqual([42, -1]);
    const outputs = engine.update(resultOf(plan, [EOS, EOS]), 0);
    expect(outputs.map((o) => [o.id, o.finishReason])).toEqual([
      [constrained.id, "stop"],
      [free.id, null], // ignore_eos: the free request goes on
    ]);
  });

  it("ends a row whose grammar failed with an error, and only that row", () => {
    const engine = createEngine({ maxInFlightSteps: 1 });
    engine.addRequest(constrained);
    engine.addRequest(free);
    const plan = engine.schedule(0).plan as StepPlan;
    const outputs = engine.update(resultOf(plan, [EOS, 7], [1, 0]), 0);
    expect(outputs.map((o) => [o.finishReason, o.error, o.newTokenIds])).toEqual([
      ["error", GRAMMAR_FAILED, []],
      [null, null, [7]],
    ]);
    expect(engine.stats().running).toBe(1);
  });

  it("refuses a grammar id the step plan cannot carry", () => {
    const engine = createEngine();
    expect(() => engine.addRequest({ ...constrained, grammarId: -3 })).toThrow(
      /grammarId must be null or an integer/,
    );
  });
});
