/**
 * The result file of one scenario (bench/results/<device>/<scenario>.json), the
 * headline ratios computed from it, and bench/results/summary.json, which keeps the
 * issue's headline figures per GPU (each key's source file is recorded next to it).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Environment } from "./environment.ts";
import type { RunMetrics } from "./metrics.ts";
import type { ServerActivity } from "./server-counters.ts";

export const RESULT_SCHEMA = 1;

export interface RunResult {
  variant: string;
  point: string;
  params: Record<string, number>;
  /** trace file (JSONL) this run replayed, relative to the work dir */
  trace: string;
  serverArgs: string[];
  metrics: RunMetrics | null;
  /** what the backend counted during the run (absent where the run has no metrics) */
  server?: ServerActivity;
  /** why the run has no metrics (the server refused its flags, crashed, ...) */
  error: string | null;
}

export interface PeftResult {
  point: string;
  /** peft_baseline.py's JSON: output_tokens_per_s, seconds, versions ... */
  result: Record<string, unknown> | null;
  error: string | null;
}

/** A point's trace, and the prefix reuse an unbounded cache of the engine's blocks would get. */
export interface TraceStats {
  requests: number;
  promptTokens: number;
  /** prompt tokens a cache keyed like the engine's (adapter, 16-token blocks) could serve */
  idealCachedTokens: number;
  idealShare: number;
}

export interface ScenarioResult extends Environment {
  schema: number;
  scenario: string;
  /** the exact command line that produced this file */
  command: string;
  startedAt: string;
  finishedAt: string;
  model: { path: string; shape: string | null };
  sloFirstTokenS: number;
  /** requests the client kept in flight at most (null: open loop) */
  maxConcurrency: number | null;
  runs: RunResult[];
  peftBaseline: PeftResult | null;
  /** each point's trace (prefix scenarios: its ideal reuse) */
  traces: Record<string, TraceStats>;
  /** headline ratios (see computeRatios and prefixRatios) */
  ratios: Record<string, number>;
}

function throughput(runs: RunResult[], variant: string, point: string): number | null {
  const run = runs.find((r) => r.variant === variant && r.point === point);
  return run?.metrics && run.metrics.ok > 0 ? run.metrics.outputTokensPerS : null;
}

function firstTokenP50(runs: RunResult[], variant: string, point: string): number | null {
  const run = runs.find((r) => r.variant === variant && r.point === point);
  return run?.metrics && run.metrics.ok > 0 ? run.metrics.firstTokenS.p50 : null;
}

/**
 * Ratios of output tokens/s on the same trace:
 *   `<variant>_vs_base@<point>`  a LoRA variant over the base model alone (the base run
 *                                of the same point, or of the first point when the
 *                                plan ran base once)
 *   `<variant>_ttft_p50_vs_base@<point>`  first-token latency p50 over base's (not a
 *                                throughput: lower is better, 1 = as fast as base)
 *   `slora_vs_<variant>@<point>` our engine over bmm / no-unifymem
 *   `slora_vs_<variant>_min`     the smallest of those over `minOver`: the S-LoRA-style
 *                                trace points (Gamma arrivals, Zipf adapters); a burst
 *                                batch such as the PEFT point is reported, not in the min
 *   `slora_vs_peft`              our engine over HF PEFT on the PEFT point's batch (when
 *                                PEFT ran all of that point's requests)
 */
export function computeRatios(
  runs: RunResult[],
  points: string[],
  peft: PeftResult | null,
  minOver: string[] = points,
): Record<string, number> {
  const ratios: Record<string, number> = {};
  const set = (key: string, a: number | null, b: number | null) => {
    if (a !== null && b !== null && b > 0) ratios[key] = a / b;
  };
  const variants = [...new Set(runs.map((r) => r.variant))].filter((v) => v !== "base");
  for (const point of points) {
    const baseAt = runs.some((r) => r.variant === "base" && r.point === point)
      ? point
      : (points[0] ?? "");
    const base = throughput(runs, "base", baseAt);
    const baseFirst = firstTokenP50(runs, "base", baseAt);
    for (const v of variants) {
      set(`${v}_vs_base@${point}`, throughput(runs, v, point), base);
      set(`${v}_ttft_p50_vs_base@${point}`, firstTokenP50(runs, v, point), baseFirst);
    }
    for (const other of variants.filter((v) => v !== "slora")) {
      set(
        `slora_vs_${other}@${point}`,
        throughput(runs, "slora", point),
        throughput(runs, other, point),
      );
    }
  }
  for (const other of variants.filter((v) => v !== "slora")) {
    const values = minOver
      .map((point) => ratios[`slora_vs_${other}@${point}`])
      .filter((value) => value !== undefined);
    if (values.length > 0) ratios[`slora_vs_${other}_min`] = Math.min(...values);
  }
  // Only a PEFT run over the same requests as the engine's compares (smoke's covers a few).
  const peftRate = peft?.result?.output_tokens_per_s;
  const engine = runs.find((r) => r.variant === "slora" && r.point === peft?.point);
  if (peft && typeof peftRate === "number" && peft.result?.requests === engine?.metrics?.requests) {
    set("slora_vs_peft", throughput(runs, "slora", peft.point), peftRate);
  }
  return ratios;
}

/**
 * Prefix caching, cache-on against cache-off on the same trace:
 *   `cache-on_vs_cache-off@<point>`  output tokens/s over output tokens/s
 *   `ttft_speedup@<point>`           cache-off's first-token p50 over cache-on's
 *   `cache_cost@<point>`             1 − that throughput ratio (the zero-hit trace: what caching costs)
 *   `hit_vs_ideal@<point>`           prompt tokens cache-on found cached (usage's cached_tokens) over
 *                                    the trace's ideal (TraceStats.idealCachedTokens)
 */
export function prefixRatios(
  runs: RunResult[],
  points: string[],
  traces: Record<string, TraceStats>,
): Record<string, number> {
  const ratios: Record<string, number> = {};
  const metricsOf = (variant: string, point: string) => {
    const run = runs.find((r) => r.variant === variant && r.point === point);
    return run?.metrics && run.metrics.ok > 0 ? run.metrics : null;
  };
  for (const point of points) {
    const on = metricsOf("cache-on", point);
    const off = metricsOf("cache-off", point);
    const ideal = traces[point]?.idealCachedTokens ?? 0;
    if (on !== null && ideal > 0) ratios[`hit_vs_ideal@${point}`] = on.cachedPromptTokens / ideal;
    if (on === null || off === null) continue;
    const throughput = on.outputTokensPerS / off.outputTokensPerS;
    ratios[`cache-on_vs_cache-off@${point}`] = throughput;
    ratios[`cache_cost@${point}`] = 1 - throughput;
    const [onP50, offP50] = [on.firstTokenS.p50, off.firstTokenS.p50];
    if (onP50 && offP50) ratios[`ttft_speedup@${point}`] = offP50 / onP50;
  }
  return ratios;
}

export function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** summary.json keys this harness fills, from which scenarios' ratio (both sweep-adapters
 * and ablations run n=2000: the later run's figure stands). */
const SUMMARY_KEYS: Record<string, { scenarios: string[]; ratio: string }> = {
  lora2000_vs_base: { scenarios: ["sweep-adapters", "ablations"], ratio: "slora_vs_base@n=2000" },
  lora2000_ttft_p50_vs_base: { scenarios: ["ablations"], ratio: "slora_ttft_p50_vs_base@n=2000" },
  lora5000_vs_base: { scenarios: ["sweep-adapters"], ratio: "slora_vs_base@n=5000" },
  vs_peft: { scenarios: ["ablations"], ratio: "slora_vs_peft" },
  vs_bmm_min: { scenarios: ["ablations"], ratio: "slora_vs_bmm_min" },
  vs_no_unifymem_min: { scenarios: ["ablations"], ratio: "slora_vs_no-unifymem_min" },
  vs_no_unifymem_pressure: { scenarios: ["pressure"], ratio: "slora_vs_no-unifymem_min" },
  prefix_mooncake_hit_vs_ideal: { scenarios: ["prefix-mooncake"], ratio: "hit_vs_ideal@mooncake" },
  prefix_mooncake_ttft_speedup: { scenarios: ["prefix-mooncake"], ratio: "ttft_speedup@mooncake" },
  prefix_saas_throughput_vs_off: {
    scenarios: ["prefix-saas"],
    ratio: "cache-on_vs_cache-off@saas",
  },
  prefix_saas_ttft_speedup: { scenarios: ["prefix-saas"], ratio: "ttft_speedup@saas" },
  prefix_zero_hit_cost: { scenarios: ["prefix-zero-hit"], ratio: "cache_cost@zero-hit" },
};

/** The backends' `--quantization` (the last one given wins, as in the backend's parser). */
export function quantizationOf(result: ScenarioResult): string {
  const args = result.runs[0]?.serverArgs ?? [];
  const at = args.lastIndexOf("--quantization");
  return at >= 0 ? (args[at + 1] ?? "auto") : "auto";
}

/**
 * Merges this result's headline figures into summary.json under the GPU's name,
 * keeping keys other benchmarks wrote (roofline, kernels, cold load, fragmentation).
 * Each key's source file goes to `sources` and the commit it was measured at to
 * `measured_at`: figures of one entry come from different runs and commits.
 * A run on an FP8 base (`--server-args="--quantization fp8"`) writes its keys with an
 * `fp8_` prefix (`fp8_lora2000_vs_base`), beside the bf16 ones.
 */
export function updateSummary(
  summaryPath: string,
  gpu: string,
  result: ScenarioResult,
  resultFile: string,
): string[] {
  const summary: Record<string, Record<string, unknown>> = existsSync(summaryPath)
    ? JSON.parse(readFileSync(summaryPath, "utf8"))
    : {};
  const entry = summary[gpu] ?? {};
  const sources = (entry.sources ?? {}) as Record<string, string>;
  const measuredAt = (entry.measured_at ?? {}) as Record<string, string | null>;
  const written: string[] = [];
  const prefix = quantizationOf(result) === "fp8" ? "fp8_" : "";
  for (const [name, { scenarios, ratio }] of Object.entries(SUMMARY_KEYS)) {
    const value = result.ratios[ratio];
    if (!scenarios.includes(result.scenario) || value === undefined) continue;
    const key = `${prefix}${name}`;
    entry[key] = value;
    sources[key] = resultFile;
    measuredAt[key] = result.gitSha;
    written.push(key);
  }
  if (written.length === 0) return written;
  Object.assign(entry, {
    command: result.command,
    git_sha: result.gitSha,
    device: result.device,
    sources,
    measured_at: measuredAt,
  });
  summary[gpu] = entry;
  writeJson(summaryPath, summary);
  return written;
}
