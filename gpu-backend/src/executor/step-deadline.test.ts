// The step cost model and the watch over the steps in flight, with fake timers.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { testModel } from "../engine/testing.ts";
import { StepFlag, type StepPlan } from "../protocol/messages.ts";
import { StepDeadlines } from "./step-deadline.ts";
import { StepWatch } from "./step-watch.ts";
import { prefillPlan } from "./test-fixtures.ts";

// testModel: 2 layers, q k v o of 128x128, 128x64, 128x64, 128x128; 4 heads of 32; vocab 64
const DENSE = 2 * 2 * (128 * 128 + 128 * 64 + 128 * 64 + 128 * 128);
const ATTENTION = 4 * 2 * 4 * 32;
const HEAD = 2 * 128 * 64;

/** One seq computing `n` tokens on `cached` ones, sampling at the end. */
function plan(stepId: number, n: number, cached = 0): StepPlan {
  const step = prefillPlan(stepId, stepId, Array(n).fill(3), 0);
  step.numCached[0] = cached;
  return step;
}

describe("StepDeadlines", () => {
  const deadlines = () => new StepDeadlines(testModel(), { floorMs: 1_000, slack: 10 });

  it("counts a step's FLOPs from its tokens, their context and its samples", () => {
    expect(deadlines().work(plan(1, 1))).toEqual({ flops: DENSE + ATTENTION + HEAD, tokens: 1 });
    // 100 tokens on 50 cached: positions 51 .. 150 attended, 10,050 in all
    expect(deadlines().work(plan(1, 100, 50))).toEqual({
      flops: 100 * DENSE + 10_050 * ATTENTION + HEAD,
      tokens: 100,
    });
    const noSample = plan(1, 4);
    noSample.flags[0] = StepFlag.new;
    expect(deadlines().work(noSample).flops).toBe(4 * DENSE + 10 * ATTENTION);
  });

  it("uses the CPU prior before any step is measured, and the floor below it", () => {
    const d = deadlines();
    const big = { flops: 5e9, tokens: 2_000 }; // 2 s per the 1 ms/token, 1 s per 5 GFLOP/s
    expect(d.deadline(big).ms).toBe(10 * 3_000);
    expect(d.deadline({ flops: 5e6, tokens: 1 }).ms).toBe(1_000);
    const gpu = new StepDeadlines(testModel({ device: "cuda" }), { floorMs: 1_000, slack: 10 });
    expect(gpu.deadline(big).ms).toBe(10 * (100 + 1)); // 0.05 ms/token, 5 TFLOP/s
  });

  it("scales with the slowest comparable recent step, and with all of them when none compares", () => {
    const d = deadlines();
    d.observe({ flops: 1e9, tokens: 1 }, 50); // 50 ms/GFLOP: a small step, mostly overhead
    d.observe({ flops: 100e9, tokens: 1 }, 1_000); // 10 ms/GFLOP
    d.observe({ flops: 200e9, tokens: 1 }, 3_000); // 15 ms/GFLOP
    // 400 GFLOP: the 100 and 200 GFLOP steps compare (>= 1/16): 15 ms/GFLOP
    expect(d.deadline({ flops: 400e9, tokens: 1 }).ms).toBeCloseTo(10 * 15 * 400, 6);
    // 10,000 GFLOP: none compares: the highest of all, 50 ms/GFLOP
    expect(d.deadline({ flops: 10_000e9, tokens: 1 }).ms).toBeCloseTo(10 * 50 * 10_000, 6);
    expect(d.deadline({ flops: 400e9, tokens: 1 }).why).toBe(
      "max(floor 1000 ms, 10 x 400 GFLOP at 15.0 ms/GFLOP)",
    );
  });

  it("forgets all but the last 32 steps", () => {
    const d = deadlines();
    d.observe({ flops: 1e9, tokens: 1 }, 1_000);
    for (let i = 0; i < 32; i++) d.observe({ flops: 1e9, tokens: 1 }, 200);
    expect(d.deadline({ flops: 1e9, tokens: 1 }).ms).toBe(2_000);
  });
});

describe("StepWatch", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function watch() {
    const deadlines = new StepDeadlines(testModel(), { floorMs: 1_000, slack: 10 });
    // 1 ms per step of 1 token (in the window from now on): tiny steps get the floor
    const hangs: string[] = [];
    return { deadlines, hangs, steps: new StepWatch(deadlines, (why) => hangs.push(why)) };
  }

  it("times a step from when it is the oldest in flight, not from when it was sent", () => {
    const { steps, hangs } = watch();
    const first = steps.sent(plan(1, 1));
    const second = steps.sent(plan(2, 1));
    vi.advanceTimersByTime(900);
    steps.settled(first, false);
    vi.advanceTimersByTime(900); // 1,800 ms after sending the second: not hung yet
    expect(hangs).toEqual([]);
    vi.advanceTimersByTime(100);
    expect(hangs).toEqual([expect.stringMatching(/^hung: no reply to step 2 in 1000 ms/)]);
    steps.settled(second, false);
  });

  it("gives the oldest step the work of the one sent behind it (the executor may launch it first)", () => {
    const { steps, hangs, deadlines } = watch();
    deadlines.observe(deadlines.work(plan(9, 100)), 200);
    const small = steps.sent(plan(1, 100));
    vi.advanceTimersByTime(1_500); // the small one alone: max(1,000, 10 x 200 ms) = 2,000 ms
    steps.sent(plan(2, 100)); // now 4,000 ms
    vi.advanceTimersByTime(2_000);
    expect(hangs).toEqual([]);
    vi.advanceTimersByTime(500);
    expect(hangs).toEqual([expect.stringMatching(/^hung: no reply to step 1 in 4000 ms/)]);
    steps.settled(small, false);
  });

  it("learns from answered steps only, each timed from when it became the oldest", () => {
    const { steps, deadlines } = watch();
    const a = steps.sent(plan(1, 100));
    const b = steps.sent(plan(2, 100));
    vi.advanceTimersByTime(300);
    steps.settled(a, true); // 300 ms
    vi.advanceTimersByTime(500);
    steps.settled(b, false); // an error reply: no sample
    const c = steps.sent(plan(3, 100));
    expect(deadlines.deadline(c.work).ms).toBe(3_000);
    steps.settled(c, true);
  });
});
