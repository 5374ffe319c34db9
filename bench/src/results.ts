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
  /** headline ratios (see computeRatios), output tokens/s over output tokens/s */
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
};

/**
 * Merges this result's headline figures into summary.json under the GPU's name,
 * keeping keys other benchmarks wrote (roofline, kernels, cold load, fragmentation).
 * Each key's source file goes to `sources` and the commit it was measured at to
 * `measured_at`: figures of one entry come from different runs and commits.
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
  for (const [key, { scenarios, ratio }] of Object.entries(SUMMARY_KEYS)) {
    const value = result.ratios[ratio];
    if (!scenarios.includes(result.scenario) || value === undefined) continue;
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
