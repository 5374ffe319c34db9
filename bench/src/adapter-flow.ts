/**
 * Where a cold adapter's first token goes, from the engine's own decisions (issue 21
 * item 1): the ablations trace (2,000 adapters, Zipf 1, 16 req/s, 30 s, the client holding
 * 64 requests in flight as `device-run.sh c64` does) through the real Engine, with the
 * executor's concurrency in simulated time (engine/timed-loop.ts: stages on
 * `--stage-threads` threads, loads one at a time, steps in order) and latencies of stage,
 * load and step as measured on the H100 (flags). Nothing here depends on a GPU: it shows
 * what the engine makes a request wait for, and how long, given those latencies.
 *
 *   node bench/src/adapter-flow.ts                 # Llama-2-7B shapes, the H100's pool: ~1 min
 *   node bench/src/adapter-flow.ts --smoke         # a short trace (CI)
 *   node bench/src/adapter-flow.ts --stage-ms-per-mib 0.3   # staging at the 20 ms goal
 *
 * Per variant (base: every request on the base model; slora): first-token latency from the
 * trace's arrival (what the bench reports) and from the client's send (what the server
 * adds), the same for cold requests (adapter not resident when sent), and a cold request's
 * chain: send -> stage sent -> stage started (queued behind other stages) -> staged -> load
 * sent -> load started -> loaded -> first token.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { EngineRequest } from "../../gpu-backend/src/engine/index.ts";
import {
  createEngine,
  greedy,
  HOST_BYTES_PER_PAGE,
  SimulatedExecutor,
  testModel,
} from "../../gpu-backend/src/engine/testing.ts";
import { runTimed, type TimedRun } from "../../gpu-backend/src/engine/timed-loop.ts";
import { currentGitSha } from "./git-sha.ts";
import { type Distribution, distribution, mean } from "./stats.ts";
import { defaultSpec, generateTrace, type Trace } from "./workload.ts";

const repoRoot = join(import.meta.dirname, "../..");

/** The executor's latencies the simulation charges (H100 host, Llama-2-7B shapes). */
export interface Latencies {
  /** staging (read, check, pack into the host tier) per MiB of host bytes, on one thread */
  stageMsPerMiB: number;
  stageThreads: number;
  /** host tier -> pool: fixed + per MiB (cold_load.py: 1.03 ms for 32 MiB) */
  loadMs: number;
  loadMsPerMiB: number;
  /** a step: fixed + per token; and what LoRA rows add to a step (issue 21: 11.8 vs 16.9 ms) */
  stepMs: number;
  stepMsPerToken: number;
  loraStepMs: number;
}

export const H100_LATENCIES: Latencies = {
  // stage.json (git 8c90096): 38.1 ms for a 33.5 MB rank-16 adapter on one thread
  stageMsPerMiB: 1.1,
  stageThreads: 4,
  loadMs: 0.25,
  loadMsPerMiB: 0.025,
  // base at 64 in flight: 11.8 ms a step mean (~64 decode + ~45 prefill tokens a step)
  stepMs: 10,
  stepMsPerToken: 0.017,
  loraStepMs: 5,
};

export interface FlowShape {
  name: string;
  numAdapters: number;
  rate: number;
  durationS: number;
  maxConcurrency: number;
  inputLen: [number, number];
  outputLen: [number, number];
  /** pool pages (the H100's after 7B weights: pool-memory.ts) and page bytes */
  numPages: number;
  pageBytes: number;
  /** pages per rank of a q/k/v/o adapter (8 at 7B: 4 modules x (A row + B row)) */
  pagesPerRank: number;
  /** the largest adapter's pages (rank 64 on all seven modules): what a stage reserves */
  maxAdapterPages: number;
  hostCacheBytes: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
}

/** Llama-2-7B on an 80 GB H100 as the bench runs it (`--max-cpu-loras n + 32`, 8 GiB host tier). */
const h100: Omit<FlowShape, "name" | "numAdapters" | "durationS" | "outputLen"> = {
  rate: 16,
  maxConcurrency: 64,
  inputLen: [8, 512],
  numPages: 223_250,
  pageBytes: 32 * 4096 * 2,
  pagesPerRank: 8,
  maxAdapterPages: 64 * 20,
  hostCacheBytes: 8 * 1024 ** 3,
  maxNumSeqs: 128,
  maxNumBatchedTokens: 2048,
};

export const SHAPES: Record<"llama-2-7b" | "smoke", FlowShape> = {
  "llama-2-7b": {
    ...h100,
    name: "llama-2-7b on an 80 GB H100, the ablations trace at 64 in flight",
    numAdapters: 2000,
    durationS: 30,
    outputLen: [8, 512],
  },
  smoke: {
    ...h100,
    name: "smoke: 200 adapters, 8 s",
    numAdapters: 200,
    durationS: 8,
    outputLen: [8, 128],
  },
};

export interface ColdChain {
  /** cold requests whose adapter's first stage and load served them */
  requests: number;
  /** mean ms: send -> stage sent, stage queued, staging, staged -> load sent, load queued, loading, loaded -> first token */
  sendToStageSent: number | null;
  stageQueued: number | null;
  staging: number | null;
  stagedToLoadSent: number | null;
  loadQueued: number | null;
  loading: number | null;
  loadedToFirstToken: number | null;
  /** what the goal allows: one stage plus one load (no queue, no wait between them) */
  oneStagePlusOneLoad: number | null;
}

export interface FlowRun {
  variant: "base" | "slora";
  requests: number;
  outputTokensPerS: number;
  /** seconds, as the bench: from the trace's arrival; and from the client's send */
  firstTokenS: Distribution;
  firstTokenFromSendS: Distribution;
  coldRequests: number;
  coldFirstTokenFromSendS: Distribution;
  coldChainMs: ColdChain;
  stages: number;
  loads: number;
  evictions: number;
  hostDrops: number;
  steps: number;
}

export interface FlowResult {
  schema: 1;
  bench: "adapter-flow";
  device: "cpu-engine";
  shape: FlowShape;
  latencies: Latencies;
  runs: FlowRun[];
  gitSha: string | null;
  command: string;
}

const MIB = 1024 ** 2;

/** The trace's requests as the engine gets them (adapter names carry their rank). */
function arrivals(trace: Trace, baseOnly: boolean): { req: EngineRequest; arrivalMs: number }[] {
  const ranks = new Map(trace.adapters.map((a) => [a.name, a.rank]));
  return trace.requests.map((r) => ({
    arrivalMs: r.arrivalS * 1000,
    req: {
      id: `r${r.id}`,
      tenant: "default",
      adapter:
        baseOnly || r.adapter === null
          ? null
          : {
              name: `${r.adapter}@r${ranks.get(r.adapter)}`,
              path: `/adapters/${r.adapter}`,
              sha256: r.adapter,
            },
      promptTokenIds: r.prompt,
      sampling: greedy,
      maxTokens: r.outputLen,
      stopTokenIds: [],
      ignoreEos: true,
      deadlineMs: null,
      arrivalMs: 0,
      cacheSalt: "",
      grammarId: null,
    },
  }));
}

const rankOf = (name: string): number => Number(name.slice(name.lastIndexOf("@r") + 2));

export function flowRun(
  shape: FlowShape,
  latencies: Latencies,
  variant: FlowRun["variant"],
  seed = 1,
): FlowRun {
  const trace = generateTrace({
    ...defaultSpec,
    seed,
    numAdapters: shape.numAdapters,
    arrival: { kind: "gamma", rate: shape.rate, cv: 1 },
    numRequests: Math.round(shape.rate * shape.durationS),
    inputLen: shape.inputLen,
    outputLen: shape.outputLen,
    promptTokenIds: [3, 32000],
  });
  // Host bytes scale as the simulated executor's (HOST_BYTES_PER_PAGE a page).
  const hostBytesScale = HOST_BYTES_PER_PAGE / shape.pageBytes;
  const model = testModel({
    numPages: shape.numPages,
    vocabSize: 32000,
    maxPosition: 4096,
    hostCacheBytes: Math.floor(shape.hostCacheBytes * hostBytesScale),
    maxAdapterHostBytes: shape.maxAdapterPages * HOST_BYTES_PER_PAGE,
  });
  const engine = createEngine(
    {
      maxNumSeqs: shape.maxNumSeqs,
      maxNumBatchedTokens: shape.maxNumBatchedTokens,
      maxInFlightSteps: 3,
      maxLoras: 1024,
      // As the server: --max-cpu-loras n + 32, raised to --max-loras.
      maxCpuLoras: Math.max(1024, shape.numAdapters + 32),
    },
    model,
  );
  const pages = (name: string): number => rankOf(name) * shape.pagesPerRank;
  const mib = (name: string): number => (pages(name) * shape.pageBytes) / MIB;
  const sim = new SimulatedExecutor(model, pages);
  const run = runTimed(engine, sim, arrivals(trace, variant === "base"), {
    stageThreads: latencies.stageThreads,
    stageMs: (name) => latencies.stageMsPerMiB * mib(name),
    loadMs: (name) => latencies.loadMs + latencies.loadMsPerMiB * mib(name),
    stepMs: (plan) =>
      latencies.stepMs +
      latencies.stepMsPerToken * plan.tokenIds.length +
      (plan.adapterIds.some((id) => id !== -1) ? latencies.loraStepMs : 0),
    maxConcurrency: shape.maxConcurrency,
  });
  const stats = engine.stats();
  return summarizeFlow(variant, run, trace, stats.adapters, (name) => ({
    stage: latencies.stageMsPerMiB * mib(name),
    load: latencies.loadMs + latencies.loadMsPerMiB * mib(name),
  }));
}

function summarizeFlow(
  variant: FlowRun["variant"],
  run: TimedRun,
  trace: Trace,
  adapters: { loads: number; evictions: number; hostDrops: number },
  ideal: (name: string) => { stage: number; load: number },
): FlowRun {
  const done = run.requests.filter((r) => r.finishReason === "length");
  if (done.length !== trace.requests.length) {
    throw new Error(`${trace.requests.length - done.length} requests did not run to their end`);
  }
  const seconds = (ms: number[]) => distribution(ms.map((x) => x / 1000));
  const first = (r: (typeof done)[number]) => r.firstTokenMs as number;
  const cold = done.filter((r) => r.cold);
  // Each cold request with the op of its adapter that came after its send.
  const opAfter = (kind: "stage" | "load", name: string, after: number) =>
    run.adapterOps.find((o) => o.kind === kind && o.name === name && o.sentMs >= after);
  const chains = cold.flatMap((r) => {
    const stage = opAfter("stage", r.adapter as string, r.sentMs);
    const load = stage && opAfter("load", r.adapter as string, stage.doneMs);
    return stage && load && load.doneMs <= first(r) ? [{ r, stage, load }] : [];
  });
  const avg = (f: (c: (typeof chains)[number]) => number) => mean(chains.map(f));
  const startMs = Math.min(...done.map((r) => r.arrivalMs));
  const endMs = Math.max(...done.map((r) => r.endMs as number));
  const outputTokens = trace.requests.reduce((sum, r) => sum + r.outputLen, 0);
  return {
    variant,
    requests: done.length,
    outputTokensPerS: outputTokens / ((endMs - startMs) / 1000),
    firstTokenS: seconds(done.map((r) => first(r) - r.arrivalMs)),
    firstTokenFromSendS: seconds(done.map((r) => first(r) - r.sentMs)),
    coldRequests: cold.length,
    coldFirstTokenFromSendS: seconds(cold.map((r) => first(r) - r.sentMs)),
    coldChainMs: {
      requests: chains.length,
      sendToStageSent: avg((c) => c.stage.sentMs - c.r.sentMs),
      stageQueued: avg((c) => c.stage.startMs - c.stage.sentMs),
      staging: avg((c) => c.stage.doneMs - c.stage.startMs),
      stagedToLoadSent: avg((c) => c.load.sentMs - c.stage.doneMs),
      loadQueued: avg((c) => c.load.startMs - c.load.sentMs),
      loading: avg((c) => c.load.doneMs - c.load.startMs),
      loadedToFirstToken: avg((c) => first(c.r) - c.load.doneMs),
      oneStagePlusOneLoad: avg((c) => {
        const { stage, load } = ideal(c.r.adapter as string);
        return stage + load;
      }),
    },
    stages: run.adapterOps.filter((o) => o.kind === "stage").length,
    loads: adapters.loads,
    evictions: adapters.evictions,
    hostDrops: adapters.hostDrops,
    steps: run.steps,
  };
}

export function adapterFlow(shape: FlowShape, latencies: Latencies): FlowResult {
  return {
    schema: 1,
    bench: "adapter-flow",
    device: "cpu-engine",
    shape,
    latencies,
    runs: [flowRun(shape, latencies, "base"), flowRun(shape, latencies, "slora")],
    gitSha: currentGitSha(repoRoot),
    command: ["node", "bench/src/adapter-flow.ts", ...process.argv.slice(2)].join(" "),
  };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      smoke: { type: "boolean", default: false },
      out: { type: "string" },
      "stage-ms-per-mib": { type: "string" },
      "stage-threads": { type: "string" },
      "lora-step-ms": { type: "string" },
    },
  });
  const shape = values.smoke ? SHAPES.smoke : SHAPES["llama-2-7b"];
  const number = (flag: string | undefined, fallback: number) =>
    flag === undefined ? fallback : Number(flag);
  const latencies: Latencies = {
    ...H100_LATENCIES,
    stageMsPerMiB: number(values["stage-ms-per-mib"], H100_LATENCIES.stageMsPerMiB),
    stageThreads: number(values["stage-threads"], H100_LATENCIES.stageThreads),
    loraStepMs: number(values["lora-step-ms"], H100_LATENCIES.loraStepMs),
  };
  const result = adapterFlow(shape, latencies);
  const out = values.out ?? join(repoRoot, "bench/results/cpu/adapter-flow.json");
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  const f = (x: number | null, digits = 0) => (x === null ? "-" : x.toFixed(digits));
  for (const r of result.runs) {
    const c = r.coldChainMs;
    console.log(
      `${r.variant.padEnd(5)} ${f(r.outputTokensPerS)} tok/s; first token p50/p99 ${f(r.firstTokenS.p50, 3)}/${f(r.firstTokenS.p99, 3)} s ` +
        `(from send ${f(r.firstTokenFromSendS.p50, 3)}/${f(r.firstTokenFromSendS.p99, 3)} s); ` +
        `cold ${r.coldRequests}: from send ${f(r.coldFirstTokenFromSendS.p50, 3)}/${f(r.coldFirstTokenFromSendS.p99, 3)} s; ` +
        `loads ${r.loads}, evictions ${r.evictions}, host drops ${r.hostDrops}, steps ${r.steps}`,
    );
    if (c.requests > 0) {
      console.log(
        `      cold chain (${c.requests}, mean ms): send->stage sent ${f(c.sendToStageSent, 1)}, stage queued ${f(c.stageQueued, 1)}, ` +
          `staging ${f(c.staging, 1)}, staged->load sent ${f(c.stagedToLoadSent, 1)}, load queued ${f(c.loadQueued, 1)}, ` +
          `loading ${f(c.loading, 1)}, loaded->first token ${f(c.loadedToFirstToken, 1)}; one stage + one load ${f(c.oneStagePlusOneLoad, 1)}`,
      );
    }
  }
  console.log(out);
}

if (import.meta.main) main();
