/**
 * Executes a scenario plan: prepares the model and adapters (bench/gpu scripts),
 * writes each point's trace, then for each variant starts the real backend, replays
 * the traces open-loop and stops it; last runs the PEFT baseline where the plan asks.
 * A variant whose server fails is recorded with its error and the run goes on.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join, relative, resolve } from "node:path";
import { type Backend, BackendStartError, startBackend } from "./backend-server.ts";
import { runOpenLoop } from "./client.ts";
import { summarize } from "./metrics.ts";
import { mooncakeTrace, readMooncakeRows } from "./mooncake.ts";
import { idealCachedTokens } from "./prefix-reuse.ts";
import type { PeftResult, RunResult, TraceStats } from "./results.ts";
import { saasChatTrace } from "./saas-chat.ts";
import type { Point, ScenarioPlan } from "./scenarios.ts";
import { type ServerActivity, scrapeServerCounters, serverActivity } from "./server-counters.ts";
import { writeTrace } from "./trace-file.ts";
import { generateTrace, type Trace, type TraceRequest } from "./workload.ts";

export interface RunContext {
  repoRoot: string;
  python: string;
  /** generated models, adapters, traces and server logs */
  workDir: string;
  /** the backend's entry file (source .ts, or a bundle on the GPU machine) */
  serverEntry: string;
  /** flags appended to every server's (the last of a repeated flag wins) */
  extraServerArgs: string[];
  /** fields merged into every request body */
  extraBody: Record<string, unknown>;
  readyTimeoutS: number;
  /** requests in flight at most (null: open loop) */
  maxConcurrency: number | null;
  log: (message: string) => void;
}

export interface ScenarioRuns {
  modelPath: string;
  runs: RunResult[];
  peft: PeftResult | null;
  /** each point's trace: its size and the prefix reuse an unbounded cache would get */
  traces: Record<string, TraceStats>;
}

/** The engine's cached block (the server's --prefix-block-size default), for the ideal reuse. */
export const ENGINE_PREFIX_BLOCK = 16;

export class BenchToolError extends Error {
  override name = "BenchToolError";
}

export async function runScenario(plan: ScenarioPlan, ctx: RunContext): Promise<ScenarioRuns> {
  const modelPath = prepareModel(plan, ctx);
  const limits = readModelLimits(modelPath);
  const traceDir = join(ctx.workDir, "traces", plan.scenario);
  mkdirSync(traceDir, { recursive: true });
  mkdirSync(join(ctx.workDir, "logs"), { recursive: true });
  const traces = new Map<string, { trace: Trace; file: string }>();
  const traceStats: Record<string, TraceStats> = {};
  for (const point of plan.points) {
    const trace = buildTrace(point, limits, ctx.repoRoot);
    const file = join(traceDir, `${point.label}.jsonl`);
    writeTrace(file, trace);
    traces.set(point.label, { trace, file });
    const promptTokens = trace.requests.reduce((sum, r) => sum + r.inputLen, 0);
    const ideal = idealCachedTokens(trace.requests, ENGINE_PREFIX_BLOCK);
    traceStats[point.label] = {
      requests: trace.requests.length,
      promptTokens,
      idealCachedTokens: ideal,
      idealShare: promptTokens === 0 ? 0 : ideal / promptTokens,
    };
  }
  const adapterDir = join(ctx.workDir, "adapters", basename(modelPath));
  prepareAdapters(plan, [...traces.values()], modelPath, adapterDir, ctx);

  const runs: RunResult[] = [];
  // Each variant in a backend of its own: one that served another variant first ran the
  // PEFT batch's decode steps 1-2 ms slower on the H100 (bench/README.md), which would
  // count against whichever variant came second.
  for (const variant of plan.variants) {
    const serverArgs = [
      "--model",
      modelPath,
      "--adapter-dir",
      adapterDir,
      "--python",
      ctx.python,
      ...plan.serverArgs,
      ...variant.serverArgs,
      ...ctx.extraServerArgs,
    ];
    const points = variant.points === "first" ? plan.points.slice(0, 1) : plan.points;
    const record = (
      point: Point,
      fields: Pick<RunResult, "metrics" | "error"> & Partial<Pick<RunResult, "server">>,
    ) =>
      runs.push({
        variant: variant.name,
        point: point.label,
        params: point.params,
        trace: relative(ctx.workDir, traces.get(point.label)?.file ?? ""),
        serverArgs,
        ...fields,
      });
    ctx.log(`${variant.name}: starting the backend`);
    let server: Backend;
    try {
      server = await startBackend({
        entry: ctx.serverEntry,
        args: serverArgs,
        cwd: ctx.repoRoot,
        log: join(ctx.workDir, "logs", `${plan.scenario}.${variant.name}.server.log`),
        readyTimeoutS: ctx.readyTimeoutS,
      });
    } catch (error) {
      if (!(error instanceof BackendStartError)) throw error;
      ctx.log(`${variant.name}: ${error.message}`);
      for (const point of points) record(point, { metrics: null, error: error.message });
      continue;
    }
    try {
      const served = basename(modelPath);
      for (const point of points) {
        const { trace } = traces.get(point.label) as { trace: Trace };
        const options = {
          baseUrl: server.url,
          modelFor: (r: TraceRequest) =>
            variant.baseOnly || r.adapter === null ? served : r.adapter,
          requestTimeoutS: plan.requestTimeoutS,
          extraBody: ctx.extraBody,
          maxConcurrency: ctx.maxConcurrency ?? undefined,
        };
        // A burst (the PEFT comparison) is measured with its adapters resident, as the
        // PEFT baseline has them loaded: one 1-token request per adapter first.
        const burst = point.spec.kind === "synthetic" && point.spec.arrival.kind === "burst";
        if (burst && !variant.baseOnly) await runOpenLoop(warmUpRequests(trace.requests), options);
        const before = await scrapeServerCounters(server.url);
        const records = await runOpenLoop(trace.requests, {
          ...options,
          onRecord: progress(ctx, `${variant.name} ${point.label}`),
        });
        const metrics = summarize(records, plan.sloFirstTokenS);
        const activity = serverActivity(before, await scrapeServerCounters(server.url));
        ctx.log(
          `${variant.name} ${point.label}: ${metrics.ok}/${metrics.requests} ok, ` +
            `${metrics.outputTokensPerS.toFixed(1)} output tok/s, ` +
            `first token p50 ${(metrics.firstTokenS.p50 ?? Number.NaN).toFixed(3)} s ` +
            `(${(metrics.firstTokenFromSendS.p50 ?? Number.NaN).toFixed(3)} s from send, ` +
            `first uses ${(metrics.firstUseFirstTokenFromSendS.p50 ?? Number.NaN).toFixed(3)} s); ` +
            `${activity.steps} steps of ${(activity.stepMsMean ?? Number.NaN).toFixed(2)} ms, ` +
            `${adapterTraffic(activity)}; ${activity.prefillTokens} prefill tokens computed, ` +
            `${metrics.cachedPromptTokens} of ${metrics.promptTokens} prompt tokens cached`,
        );
        for (const failure of metrics.failures) ctx.log(`  ${failure}`);
        record(point, { metrics, server: activity, error: null });
      }
    } finally {
      await server.stop();
    }
  }
  const peft = plan.peft === null ? null : runPeft(plan, traces, modelPath, adapterDir, ctx);
  return { modelPath, runs, peft, traces: traceStats };
}

/** A point's trace: synthetic (S-LoRA's), the Mooncake trace scaled, or SaaS chat sessions. */
export function buildTrace(
  point: Point,
  limits: { vocab: number; maxPosition: number },
  repoRoot: string,
): Trace {
  const spec = point.spec;
  switch (spec.kind) {
    case "synthetic":
      return generateTrace({ ...spec, promptTokenIds: [3, limits.vocab] });
    case "mooncake": {
      const rows = readMooncakeRows(resolve(repoRoot, spec.path));
      return mooncakeTrace(rows, spec, limits.vocab, limits.maxPosition);
    }
    case "saas":
      return saasChatTrace(spec, limits.vocab, limits.maxPosition);
  }
}

/** One 1-token request per distinct adapter of `requests`, all at once. */
export function warmUpRequests(requests: readonly TraceRequest[]): TraceRequest[] {
  const first = new Map<string, TraceRequest>();
  for (const r of requests)
    if (r.adapter !== null && !first.has(r.adapter)) first.set(r.adapter, r);
  return [...first.values()].map((r) => ({
    ...r,
    arrivalS: 0,
    inputLen: 8,
    outputLen: 1,
    prompt: r.prompt.slice(0, 8),
  }));
}

function progress(ctx: RunContext, label: string) {
  return (_: unknown, done: number, total: number) => {
    const step = Math.max(1, Math.floor(total / 10));
    if (done % step === 0 || done === total) ctx.log(`${label}: ${done}/${total} done`);
  };
}

function python(ctx: RunContext, script: string, args: string[]): string {
  const path = join(ctx.repoRoot, "bench", "gpu", script);
  ctx.log(`${script} ${args.join(" ")}`);
  const result = spawnSync(ctx.python, [path, ...args], {
    cwd: ctx.repoRoot,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 << 20,
  });
  if (result.status !== 0) {
    throw new BenchToolError(
      `${script} failed (${result.error?.message ?? `exit ${result.status}`})`,
    );
  }
  return result.stdout.trim().split("\n").at(-1) ?? "";
}

function prepareModel(plan: ScenarioPlan, ctx: RunContext): string {
  if (plan.model.kind === "directory") {
    if (!existsSync(join(plan.model.path, "config.json"))) {
      throw new BenchToolError(`no config.json in model directory ${plan.model.path}`);
    }
    return plan.model.path;
  }
  const shape = plan.model.shape;
  const path = join(ctx.workDir, "models", shape);
  // make_model.py writes config.json after every weight: its presence means complete.
  if (existsSync(join(path, "config.json"))) return path;
  const args = shape === "tiny" ? ["--smoke"] : ["--shape", shape];
  python(ctx, "make_model.py", [...args, "--out", path]);
  return path;
}

function readModelLimits(modelPath: string): { vocab: number; maxPosition: number } {
  const config = JSON.parse(readFileSync(join(modelPath, "config.json"), "utf8"));
  if (!Number.isSafeInteger(config.vocab_size) || config.vocab_size <= 3) {
    throw new BenchToolError(`${modelPath}/config.json: bad vocab_size ${config.vocab_size}`);
  }
  const maxPosition = config.max_position_embeddings;
  if (!Number.isSafeInteger(maxPosition) || maxPosition < 2) {
    throw new BenchToolError(
      `${modelPath}/config.json: bad max_position_embeddings ${maxPosition}`,
    );
  }
  return { vocab: config.vocab_size, maxPosition };
}

/** One make_adapters.py call per adapter name prefix (`adapter-0012`: `adapter-`), from the trace with the most adapters. */
function prepareAdapters(
  plan: ScenarioPlan,
  traces: { trace: Trace; file: string }[],
  modelPath: string,
  adapterDir: string,
  ctx: RunContext,
): void {
  const largest = new Map<string, { trace: Trace; file: string }>();
  for (const entry of traces) {
    const prefix = entry.trace.adapters[0]?.name.replace(/\d+$/, "") ?? "";
    const best = largest.get(prefix);
    if (
      entry.trace.adapters.length > 0 &&
      (!best || entry.trace.adapters.length > best.trace.adapters.length)
    ) {
      largest.set(prefix, entry);
    }
  }
  for (const { file } of largest.values()) {
    const distinct =
      plan.distinctAdapterFiles === null ? [] : ["--distinct", String(plan.distinctAdapterFiles)];
    python(ctx, "make_adapters.py", [
      "--model",
      modelPath,
      "--out",
      adapterDir,
      "--trace",
      file,
      ...distinct,
    ]);
  }
}

function runPeft(
  plan: ScenarioPlan,
  traces: Map<string, { trace: Trace; file: string }>,
  modelPath: string,
  adapterDir: string,
  ctx: RunContext,
): PeftResult {
  const { point, batch } = plan.peft as { point: string; batch: number };
  const file = traces.get(point)?.file;
  if (file === undefined) throw new BenchToolError(`PEFT point ${point} is not in the plan`);
  const smoke = plan.scenario === "smoke" ? ["--smoke"] : [];
  const out = join(ctx.workDir, "logs", `${plan.scenario}.peft.json`);
  try {
    const args = [
      "--model",
      modelPath,
      "--adapters",
      adapterDir,
      "--trace",
      file,
      "--batch",
      String(batch),
    ];
    python(ctx, "peft_baseline.py", [...args, ...smoke, "--out", out]);
    const result = JSON.parse(readFileSync(out, "utf8")) as Record<string, unknown>;
    ctx.log(`peft ${point}: ${Number(result.output_tokens_per_s).toFixed(1)} output tok/s`);
    return { point, result, error: null };
  } catch (error) {
    if (!(error instanceof BenchToolError)) throw error;
    writeFileSync(out, "");
    return { point, result: null, error: error.message };
  }
}

/** "N adapter loads", with how long a stage and a load took on average when any ran. */
function adapterTraffic(activity: ServerActivity): string {
  const loads = `${activity.adapterLoads} adapter loads`;
  if (activity.stageMsMean === null && activity.loadMsMean === null) return loads;
  const ms = (value: number | null) => (value ?? Number.NaN).toFixed(1);
  return `${loads} (stage ${ms(activity.stageMsMean)} ms, load ${ms(activity.loadMsMean)} ms each)`;
}
