/**
 * The benchmark scenarios as data: which model, which trace points, which server
 * variants. run-scenario.ts executes a plan; nothing here starts anything.
 *
 * Variants are the paper's systems, all served by the same backend binary:
 *   base         the base model alone on the same trace (every request names the base
 *                model): the upper bound
 *   slora        our engine: Unified Paging + Triton LoRA kernels over pool pages
 *   bmm          the same engine with the plain PyTorch gather-and-bmm LoRA path
 *                (the paper's "S-LoRA-bmm")
 *   no-unifymem  the same engine with adapters outside the unified pool (the paper's
 *                "S-LoRA-no-unify-mem")
 *   cache-on     our engine with prefix caching (the default), for the prefix scenarios
 *   cache-off    the same with --enable-prefix-caching false
 * and `peft` (HF transformers + PEFT, bench/gpu/peft_baseline.py) where a plan asks.
 */
import { defaultMooncake, type MooncakeSpec } from "./mooncake.ts";
import { defaultSaas, type SaasSpec } from "./saas-chat.ts";
import { defaultSpec, type WorkloadSpec } from "./workload.ts";

export interface Variant {
  name: "base" | "slora" | "bmm" | "no-unifymem" | "cache-on" | "cache-off";
  /** every request names the base model instead of its adapter */
  baseOnly: boolean;
  /** server flags this variant adds */
  serverArgs: string[];
  /** "first": the variant's figure does not depend on the point (see the plan), run once */
  points: "all" | "first";
}

export interface Point {
  label: string;
  /** the swept values, for tables and plots */
  params: Record<string, number>;
  /** how its trace is made (run-scenario.ts buildTrace) */
  spec: WorkloadSpec | MooncakeSpec | SaasSpec;
}

export type ModelSource =
  | { kind: "directory"; path: string }
  | { kind: "generated"; shape: "llama-2-7b" | "llama-2-13b" | "tiny" };

export interface ScenarioPlan {
  scenario: string;
  model: ModelSource;
  points: Point[];
  variants: Variant[];
  /** run the PEFT baseline on the first `batch` requests of this point's trace */
  peft: { point: string; batch: number } | null;
  /** flags every variant's server gets */
  serverArgs: string[];
  sloFirstTokenS: number;
  requestTimeoutS: number;
  /** at most this many adapter weight files per rank (hard links for the rest) */
  distinctAdapterFiles: number | null;
}

/** Knobs the command line may set; each scenario has its own defaults. */
export interface PlanOptions {
  seed: number;
  /** tiny: the pressure scenario's CPU smoke */
  shape: "llama-2-7b" | "llama-2-13b" | "tiny";
  modelDir: string | null;
  durationS: number | null;
  rate: number | null;
  adapters: number[] | null;
  rates: number[] | null;
  variants: Variant["name"][] | null;
  /** prefix-mooncake: the Mooncake conversation trace (.jsonl or .jsonl.gz) */
  mooncakeTrace: string | null;
  /** prefix-mooncake: its first this many requests */
  requests: number | null;
  /** prefix-mooncake: timestamps divided by this */
  timeScale: number | null;
}

export const VARIANTS: Record<Variant["name"], Omit<Variant, "points">> = {
  // base is slora's server with requests naming the base model; each variant gets a backend of its own.
  base: { name: "base", baseOnly: true, serverArgs: ["--lora-backend", "triton"] },
  slora: { name: "slora", baseOnly: false, serverArgs: ["--lora-backend", "triton"] },
  bmm: { name: "bmm", baseOnly: false, serverArgs: ["--lora-backend", "torch"] },
  // slora's server with the pool split statically: half the pages only for adapters,
  // half only for KV (--adapter-pool-fraction, default 0.5), so neither can use what
  // the other frees. `--server-args="--adapter-pool-fraction 0.3"` moves the split.
  "no-unifymem": {
    name: "no-unifymem",
    baseOnly: false,
    serverArgs: ["--lora-backend", "triton", "--unified-paging", "false"],
  },
  "cache-on": {
    name: "cache-on",
    baseOnly: false,
    serverArgs: ["--lora-backend", "triton", "--enable-prefix-caching", "true"],
  },
  "cache-off": {
    name: "cache-off",
    baseOnly: false,
    serverArgs: ["--lora-backend", "triton", "--enable-prefix-caching", "false"],
  },
};

export const SCENARIOS = [
  "smoke",
  "sweep-adapters",
  "sweep-rate",
  "ablations",
  "pressure",
  "prefix-mooncake",
  "prefix-saas",
  "prefix-zero-hit",
  "prefix-smoke",
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

const paperLengths = { inputLen: [8, 512], outputLen: [8, 512] } as Pick<
  WorkloadSpec,
  "inputLen" | "outputLen"
>;

function gammaPoint(
  label: string,
  params: Record<string, number>,
  over: Partial<WorkloadSpec> & { rate: number; durationS: number },
): Point {
  const { rate, durationS, ...rest } = over;
  return {
    label,
    params,
    spec: {
      ...defaultSpec,
      ...paperLengths,
      arrival: { kind: "gamma", rate, cv: 1 },
      numRequests: Math.max(1, Math.round(rate * durationS)),
      ...rest,
    },
  };
}

function pick(
  names: Variant["name"][] | null,
  fallback: Variant["name"][],
  firstOnly: Variant["name"][] = [],
): Variant[] {
  return (names ?? fallback).map((name) => ({
    ...VARIANTS[name],
    points: firstOnly.includes(name) ? "first" : "all",
  }));
}

/** The tiny model the CPU scenarios generate (or --model-dir). */
function cpuModel(o: PlanOptions): ModelSource {
  return o.modelDir
    ? { kind: "directory", path: o.modelDir }
    : { kind: "generated", shape: "tiny" };
}

function gpuModel(o: PlanOptions): ModelSource {
  return o.modelDir
    ? { kind: "directory", path: o.modelDir }
    : { kind: "generated", shape: o.shape };
}

/**
 * The pressure scenario's sizes: `waves` x `seqs` requests at once, each on its own
 * adapter of `rank` on q/k/v/o (`pagesPerRank` pages a rank), `input` + `output` tokens
 * (2 KV pages a token). The pool holds one wave at its longest, its adapters beside it,
 * and `slack` pages (steps in flight hold freed pages a little longer).
 */
const PRESSURE = {
  gpu: { seqs: 32, waves: 4, rank: 64, pagesPerRank: 8, input: 256, output: 1024, slack: 1696 },
  // tiny: W = 32, q/k/v/o rows of 64 or 32 -> 14 pages a rank
  tiny: { seqs: 4, waves: 2, rank: 16, pagesPerRank: 14, input: 16, output: 240, slack: 56 },
};

// 300 s: Node's fetch gives up on a silent connection after 300 s anyway (undici's default).
const gpuServing = { sloFirstTokenS: 6, requestTimeoutS: 300, distinctAdapterFiles: 4 };

/** The small Mooncake sample committed for the CPU smoke (its first rows, bench/traces/README.md). */
export const MOONCAKE_SAMPLE = "bench/traces/mooncake-conversation-head.jsonl";

/** Prefix caching on and off, each in a backend of its own. */
const cacheVariants = (o: PlanOptions) => pick(o.variants, ["cache-on", "cache-off"]);

function mooncakePoint(o: PlanOptions, path: string, over: Partial<MooncakeSpec>): Point {
  const flags = { requests: o.requests ?? undefined, timeScale: o.timeScale ?? undefined };
  const spec = { ...defaultMooncake, path, seed: o.seed, ...over, ...given(flags) };
  return {
    label: "mooncake",
    params: { requests: spec.requests, timeScale: spec.timeScale },
    spec,
  };
}

function saasPoint(o: PlanOptions, over: Partial<SaasSpec>): Point {
  const flags = { sessionRate: o.rate ?? undefined, durationS: o.durationS ?? undefined };
  const spec = { ...defaultSaas, seed: o.seed, ...over, ...given(flags) };
  const params = { numAdapters: spec.adapters.count, sessionRate: spec.sessionRate };
  return { label: "saas", params, spec };
}

/** The fields of `values` that are set: command-line flags over a scenario's own values. */
function given<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(values).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}

export function planScenario(name: ScenarioName, o: PlanOptions): ScenarioPlan {
  switch (name) {
    case "smoke":
      // CPU, tiny model: short enough for the CI suite (< 90 s on 2 cores).
      return {
        scenario: name,
        model: cpuModel(o),
        points: [
          gammaPoint(
            "n=4",
            { numAdapters: 4, rate: 4 },
            {
              seed: o.seed,
              numAdapters: 4,
              ranks: [4, 8, 16],
              rate: o.rate ?? 4,
              durationS: o.durationS ?? 2,
              inputLen: [8, 24],
              outputLen: [4, 12],
            },
          ),
        ],
        // no-unifymem too: CI checks that the split pool serves (not how fast).
        variants: pick(o.variants, ["base", "slora", "no-unifymem"]),
        peft: { point: "n=4", batch: 4 },
        // An explicit pool: 0 pages means "derive from memory", which on CPU takes most of the RAM.
        serverArgs: ["--device", "cpu", "--max-lora-rank", "16", "--num-pages", "4096"],
        sloFirstTokenS: 5,
        requestTimeoutS: 60,
        distinctAdapterFiles: null,
      };
    case "sweep-adapters": {
      // Lengths and arrivals do not depend on the adapter count (own PRNG streams),
      // so the base model's run on the first point stands for every point.
      const counts = o.adapters ?? [1, 100, 1000, 2000, 5000];
      const rate = o.rate ?? 16;
      return {
        scenario: name,
        model: gpuModel(o),
        points: counts.map((n) =>
          gammaPoint(
            `n=${n}`,
            { numAdapters: n, rate },
            { seed: o.seed, numAdapters: n, rate, durationS: o.durationS ?? 30 },
          ),
        ),
        variants: pick(o.variants, ["base", "slora"], ["base"]),
        peft: null,
        serverArgs: ["--max-cpu-loras", String(Math.max(...counts))],
        ...gpuServing,
      };
    }
    case "sweep-rate": {
      const n = o.adapters?.[0] ?? 1000;
      return {
        scenario: name,
        model: gpuModel(o),
        points: (o.rates ?? [1, 2, 4, 8, 16, 32]).map((rate) =>
          gammaPoint(
            `rate=${rate}`,
            { numAdapters: n, rate },
            { seed: o.seed, numAdapters: n, rate, durationS: o.durationS ?? 30 },
          ),
        ),
        variants: pick(o.variants, ["base", "slora"]),
        peft: null,
        serverArgs: ["--max-cpu-loras", String(n)],
        ...gpuServing,
      };
    }
    case "pressure": {
      // Unified Paging's reason to exist (issue 21 item 4): a pool that holds a wave's KV
      // at its longest and the wave's adapters, shared, never preempts; split at
      // --adapter-pool-fraction (no-unifymem, 0.5 by default) its KV share holds ~61% of
      // that KV at 7B (`pressure` below), so the split must preempt, whatever the timing.
      // Only an F sized for this workload's exact mix (the adapters' share, 0.16 here)
      // would not, and the ablations trace (2,000 adapters, short outputs) wants the
      // opposite mix: one pool for both is what Unified Paging is.
      const tiny = o.shape === "tiny";
      const p = tiny ? PRESSURE.tiny : PRESSURE.gpu;
      const kvPages = 2 * (p.input + p.output);
      const numPages = p.seqs * (kvPages + p.rank * p.pagesPerRank) + p.slack;
      const numRequests = p.seqs * p.waves;
      return {
        scenario: name,
        model: tiny ? { kind: "generated", shape: "tiny" } : gpuModel(o),
        points: [
          {
            label: `waves=${p.waves}`,
            params: { numAdapters: numRequests, seqs: p.seqs, numPages },
            spec: {
              ...defaultSpec,
              seed: o.seed,
              numAdapters: numRequests,
              ranks: [p.rank],
              assignment: { kind: "round-robin" },
              arrival: { kind: "burst" },
              numRequests,
              inputLen: [p.input, p.input],
              outputLen: [p.output, p.output],
            },
          },
        ],
        variants: pick(o.variants, ["slora", "no-unifymem"]),
        peft: null,
        serverArgs: [
          ...(tiny ? ["--device", "cpu", "--max-lora-rank", "16"] : []),
          "--num-pages",
          String(numPages),
          "--max-num-seqs",
          String(p.seqs),
          "--max-cpu-loras",
          String(numRequests),
        ],
        sloFirstTokenS: gpuServing.sloFirstTokenS,
        requestTimeoutS: gpuServing.requestTimeoutS,
        distinctAdapterFiles: tiny ? null : gpuServing.distinctAdapterFiles,
      };
    }
    case "ablations": {
      const n = o.adapters?.[0] ?? 2000;
      const rate = o.rate ?? 16;
      // The PEFT comparison: 32 requests over 32 rank-16 adapters, 128 prompt
      // + 128 generated tokens, all at once.
      const peftBatch: Point = {
        label: "peft-batch",
        params: { numAdapters: 32, batch: 32 },
        spec: {
          ...defaultSpec,
          seed: o.seed,
          numAdapters: 32,
          ranks: [16],
          assignment: { kind: "round-robin" },
          arrival: { kind: "burst" },
          numRequests: 32,
          inputLen: [128, 128],
          outputLen: [128, 128],
          adapterPrefix: "peft-",
        },
      };
      return {
        scenario: name,
        model: gpuModel(o),
        points: [
          gammaPoint(
            `n=${n}`,
            { numAdapters: n, rate },
            { seed: o.seed, numAdapters: n, rate, durationS: o.durationS ?? 30 },
          ),
          peftBatch,
        ],
        variants: pick(o.variants, ["base", "slora", "bmm", "no-unifymem"]),
        peft: { point: "peft-batch", batch: 32 },
        serverArgs: ["--max-cpu-loras", String(n + 32)],
        ...gpuServing,
      };
    }
    case "prefix-mooncake": {
      if (o.mooncakeTrace === null) throw new Error("prefix-mooncake needs --mooncake-trace");
      return {
        scenario: name,
        model: gpuModel(o),
        points: [mooncakePoint(o, o.mooncakeTrace, {})],
        variants: cacheVariants(o),
        peft: null,
        serverArgs: ["--max-cpu-loras", String(defaultMooncake.numAdapters)],
        ...gpuServing,
      };
    }
    case "prefix-saas":
      return {
        scenario: name,
        model: gpuModel(o),
        points: [saasPoint(o, {})],
        variants: cacheVariants(o),
        peft: null,
        serverArgs: ["--max-cpu-loras", String(defaultSaas.adapters.count)],
        ...gpuServing,
      };
    case "prefix-zero-hit": {
      // Unique random prompts (no two share a block): what caching costs when it never hits.
      const n = o.adapters?.[0] ?? 100;
      const rate = o.rate ?? 16;
      return {
        scenario: name,
        model: gpuModel(o),
        points: [
          gammaPoint(
            "zero-hit",
            { numAdapters: n, rate },
            { seed: o.seed, numAdapters: n, rate, durationS: o.durationS ?? 30 },
          ),
        ],
        variants: cacheVariants(o),
        peft: null,
        serverArgs: ["--max-cpu-loras", String(n)],
        ...gpuServing,
      };
    }
    case "prefix-smoke": {
      // CPU, tiny model: the three prefix workloads at toy sizes, cache on and off.
      const tiny = { numAdapters: 4, ranks: [4, 8, 16] };
      return {
        scenario: name,
        model: cpuModel(o),
        points: [
          // sessions of 2-3 short turns under a 40-60-token system prompt, every 0.5 s
          saasPoint(o, {
            adapters: { ...defaultSaas.adapters, count: 4, ranks: tiny.ranks },
            sessionRate: 2,
            durationS: 3,
            turns: [2, 3],
            thinkS: [0.2, 0.5],
            lengths: { system: [40, 60], user: [8, 24], answer: [4, 12] },
            decodeSPerToken: 0.01,
          }),
          mooncakePoint(o, o.mooncakeTrace ?? MOONCAKE_SAMPLE, {
            ...tiny,
            requests: 60,
            lengthDivisor: 32,
            timeScale: 8,
          }),
          gammaPoint(
            "zero-hit",
            { numAdapters: 4, rate: 4 },
            {
              seed: o.seed,
              ...tiny,
              rate: 4,
              durationS: 2,
              inputLen: [8, 24],
              outputLen: [4, 12],
            },
          ),
        ],
        variants: cacheVariants(o),
        peft: null,
        // A pool that holds every block of these traces: the hits are then the ideal's.
        serverArgs: ["--device", "cpu", "--max-lora-rank", "16", "--num-pages", "65536"],
        sloFirstTokenS: 5,
        requestTimeoutS: 60,
        distinctAdapterFiles: null,
      };
    }
  }
}
