/** Hand-made run results for the ratio, summary and plot tests. */
import type { RunMetrics } from "../metrics.ts";
import type { RunResult } from "../results.ts";

export function metricsWith(outputTokensPerS: number, ok = 10): RunMetrics {
  const dist = { mean: 0.1, p50: 0.1, p90: 0.2, p99: 0.3, max: 0.3 };
  return {
    requests: 10,
    ok,
    aborted: 0,
    failed: 10 - ok,
    durationS: 10,
    requestsPerS: ok / 10,
    outputTokensPerS,
    totalTokensPerS: outputTokensPerS * 2,
    promptTokens: 1000,
    cachedPromptTokens: 0,
    firstTokenS: dist,
    firstTokenFromSendS: dist,
    firstUseFirstTokenFromSendS: dist,
    perTokenS: dist,
    endToEndS: dist,
    sloFirstTokenS: 6,
    sloAttainment: 1,
    shortOutputs: 0,
    maxSendLagS: 0,
    failures: [],
  };
}

export function run(variant: string, point: string, tps: number | null, n = 0): RunResult {
  return {
    variant,
    point,
    params: { numAdapters: n, rate: 4 },
    trace: `traces/${point}.jsonl`,
    serverArgs: [],
    metrics: tps === null ? null : metricsWith(tps),
    error: tps === null ? "server refused --unified-paging" : null,
  };
}
