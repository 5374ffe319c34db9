// bench/src/adapter-flow.ts on a short trace: the real Engine and the executor's concurrency
// in simulated time, with the H100's latencies. Checks what the figures mean, not speed.
import { describe, expect, it } from "vitest";
import { adapterFlow, H100_LATENCIES, SHAPES } from "../src/adapter-flow.ts";

describe("adapter flow (short trace)", () => {
  const result = adapterFlow(SHAPES.smoke, H100_LATENCIES);
  const [base, slora] = result.runs;

  it("serves every request of the trace in both variants, base without adapters", () => {
    const requests = Math.round(SHAPES.smoke.rate * SHAPES.smoke.durationS);
    expect(base?.requests).toBe(requests);
    expect(slora?.requests).toBe(requests);
    expect(base?.coldRequests).toBe(0);
    expect(base?.loads).toBe(0);
    // every adapter the trace touches is loaded once: the pool holds them all
    expect(slora?.loads).toBe(slora?.stages);
    expect(slora?.coldRequests).toBeGreaterThan(0);
  });

  it("costs a cold first token one stage and one load, with no wait between them", () => {
    const chain = slora?.coldChainMs;
    expect(chain?.requests).toBeGreaterThan(0);
    expect(chain?.sendToStageSent).toBe(0);
    expect(chain?.stagedToLoadSent).toBe(0);
    // stage + load alone: the bench's per-MiB figures
    expect((chain?.staging ?? 0) + (chain?.loading ?? 0)).toBeCloseTo(
      chain?.oneStagePlusOneLoad ?? 0,
      6,
    );
    expect(result.gitSha).toMatch(/^[0-9a-f]{40}$/);
  });
});
