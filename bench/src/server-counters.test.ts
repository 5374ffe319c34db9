import { describe, expect, it } from "vitest";
import { parseServerCounters, serverActivity } from "./server-counters.ts";

const exposition = (steps: number, seconds: number, loads: number) => `
# HELP lorafleet_step_seconds a step's wall time
# TYPE lorafleet_step_seconds histogram
lorafleet_step_seconds_bucket{le="0.01"} 3
lorafleet_step_seconds_sum ${seconds}
lorafleet_step_seconds_count ${steps}
lorafleet_adapter_loads_total ${loads}
lorafleet_adapter_op_seconds_sum{op="stage"} ${loads * 0.05}
lorafleet_adapter_op_seconds_count{op="stage"} ${loads}
lorafleet_requests_total{finish_reason="length"} 9
lorafleet_prefix_cache_query_tokens_total ${loads * 100}
lorafleet_prefix_cache_hit_tokens_total ${loads * 30}
lorafleet_pool_evictions_total{kind="kv"} ${loads * 2}
lorafleet_pool_evictions_total{kind="adapter"} 1
`;

describe("server counters", () => {
  it("reads its samples, labelled ones by name and labels, and defaults the missing to 0", () => {
    expect(parseServerCounters(exposition(10, 0.25, 4))).toEqual({
      steps: 10,
      stepSeconds: 0.25,
      adapterLoads: 4,
      adapterEvictions: 0,
      preemptions: 0,
      stages: 4,
      stageSeconds: 0.2,
      loads: 0,
      loadSeconds: 0,
      prefixQueryTokens: 400,
      prefixHitTokens: 120,
      kvEvictions: 8,
    });
  });

  it("gives the activity between two scrapes", () => {
    const before = parseServerCounters(exposition(10, 0.25, 4));
    const after = parseServerCounters(exposition(110, 1.25, 9));
    expect(serverActivity(before, after)).toEqual({
      steps: 100,
      stepMsMean: 10,
      adapterLoads: 5,
      adapterEvictions: 0,
      preemptions: 0,
      stageMsMean: expect.closeTo(50, 9),
      loadMsMean: null,
      prefillTokens: 500 - 150,
      prefixHitTokens: 150,
      kvEvictions: 10,
    });
    expect(serverActivity(before, before).stepMsMean).toBeNull();
  });
});
