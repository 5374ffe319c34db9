/** The command line of `node bench/src/main.ts <scenario> [flags]`, checked into typed options. */
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  type PlanOptions,
  SCENARIOS,
  type ScenarioName,
  VARIANTS,
  type Variant,
} from "./scenarios.ts";

export class UsageError extends Error {
  override name = "UsageError";
}

export const USAGE = `usage: node bench/src/main.ts <scenario> [flags]     (npm run bench -- <scenario> [flags])

scenarios:
  smoke            CPU: tiny model + 4 adapters, a 2 s trace, base and slora, PEFT on 4 requests
  sweep-adapters   GPU: throughput vs number of adapters (1 .. 5000) at a fixed rate
  sweep-rate       GPU: throughput and first-token latency vs request rate
  ablations        GPU: base / slora / bmm / no-unifymem on one trace, and HF PEFT on 32x32 rank 16
  pressure         GPU: slora / no-unifymem where KV and adapters share a pool that fits
                   both only shared (--shape tiny: the same on CPU, the smoke)
  prefix-mooncake  GPU: prefix caching on vs off on the Mooncake conversation trace (--mooncake-trace)
  prefix-saas      GPU: prefix caching on vs off on SaaS chat sessions (200 adapters' system prompts)
  prefix-zero-hit  GPU: prefix caching on vs off on prompts that share nothing (what caching costs)
  prefix-smoke     CPU: the three prefix workloads at toy sizes, cache on and off

flags:
  --out DIR             results root (default bench/results): writes DIR/<device>/<scenario>.json
  --work-dir DIR        generated models, adapters, traces, server logs (default .cache/bench)
  --python PATH         the executor's Python (default $LORAFLEET_PYTHON or .venv/bin/python)
  --server-entry FILE   backend entry (default gpu-backend/src/server/main.ts; a bundle on the GPU)
  --server-args="..."   extra backend flags, appended (the last of a repeated flag wins);
                        the "=" is needed since the value starts with "--"
  --body JSON           fields merged into every request body (default {"ignore_eos":true})
  --shape NAME          llama-2-7b (default) | llama-2-13b, generated with random weights;
                        tiny (pressure only): the tiny model on CPU
  --model-dir DIR       use this HF model directory instead of a generated one
  --seed N              workload seed (default 0)
  --duration S          trace length in seconds (requests = rate x duration)
  --rate R              requests per second (sweep-adapters, ablations, smoke, prefix-zero-hit);
                        sessions per second (prefix-saas)
  --rates A,B,..        the rates of sweep-rate
  --adapters A,B,..     adapter counts of sweep-adapters; the first is n for sweep-rate and ablations
  --variants A,B,..     of ${Object.keys(VARIANTS).join(", ")}
  --mooncake-trace FILE the Mooncake conversation_trace.jsonl (or .jsonl.gz): prefix-mooncake
  --requests N          prefix-mooncake: the trace's first N requests (default 1000)
  --time-scale X        prefix-mooncake: timestamps divided by X (default 5)
  --max-concurrency N   requests in flight at most; later arrivals wait for one to end (as
                        vLLM's benchmark): the engines compared run at the same concurrency
  --ready-timeout S     seconds a backend may take to start (default 600)
  --no-summary          do not update <out>/summary.json (it is updated only on a GPU anyway)
  --no-peft             skip the HF PEFT baseline (minutes on a GPU; its ratio needs the same run)
`;

export interface CliOptions {
  scenario: ScenarioName;
  plan: PlanOptions;
  outDir: string;
  workDir: string;
  python: string;
  serverEntry: string;
  serverArgs: string[];
  body: Record<string, unknown>;
  readyTimeoutS: number;
  /** requests in flight at most (null: open loop, the server decides) */
  maxConcurrency: number | null;
  summary: boolean;
  peft: boolean;
}

export function parseCli(argv: string[], repoRoot: string, env: NodeJS.ProcessEnv): CliOptions {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  const [scenario, ...rest] = positionals;
  if (
    scenario === undefined ||
    rest.length > 0 ||
    !(SCENARIOS as readonly string[]).includes(scenario)
  ) {
    throw new UsageError(
      `expected one scenario of ${SCENARIOS.join(", ")}, got ${positionals.join(" ") || "none"}`,
    );
  }
  const shape = values.shape ?? "llama-2-7b";
  if (shape !== "llama-2-7b" && shape !== "llama-2-13b" && shape !== "tiny")
    throw new UsageError(`--shape: unknown shape ${shape}`);
  if (shape === "tiny" && scenario !== "pressure")
    throw new UsageError("--shape tiny is the pressure scenario's CPU smoke only");
  const variants = values.variants === undefined ? null : values.variants.split(",");
  for (const v of variants ?? []) {
    if (!(v in VARIANTS)) throw new UsageError(`--variants: unknown variant ${v}`);
  }
  const mooncake = values["mooncake-trace"];
  if (scenario === "prefix-mooncake" && mooncake === undefined) {
    throw new UsageError("prefix-mooncake needs --mooncake-trace FILE (bench/README.md)");
  }
  // Every request asks for exactly its trace length, as the paper's workload does.
  const body: Record<string, unknown> = { ignore_eos: true };
  if (values.body !== undefined) Object.assign(body, jsonObject("--body", values.body));
  return {
    scenario: scenario as ScenarioName,
    plan: {
      seed: integer("--seed", values.seed ?? "0", 0),
      shape,
      modelDir: values["model-dir"] === undefined ? null : resolve(values["model-dir"]),
      durationS: values.duration === undefined ? null : positive("--duration", values.duration),
      rate: values.rate === undefined ? null : positive("--rate", values.rate),
      rates:
        values.rates === undefined
          ? null
          : values.rates.split(",").map((r) => positive("--rates", r)),
      adapters:
        values.adapters === undefined
          ? null
          : values.adapters.split(",").map((n) => integer("--adapters", n, 0)),
      variants: variants as Variant["name"][] | null,
      mooncakeTrace: mooncake === undefined ? null : resolve(mooncake),
      requests: values.requests === undefined ? null : integer("--requests", values.requests, 1),
      timeScale:
        values["time-scale"] === undefined ? null : positive("--time-scale", values["time-scale"]),
    },
    outDir: resolve(values.out ?? resolve(repoRoot, "bench/results")),
    workDir: resolve(values["work-dir"] ?? resolve(repoRoot, ".cache/bench")),
    python: values.python ?? env.LORAFLEET_PYTHON ?? resolve(repoRoot, ".venv/bin/python"),
    serverEntry: resolve(
      values["server-entry"] ?? resolve(repoRoot, "gpu-backend/src/server/main.ts"),
    ),
    serverArgs: (values["server-args"] ?? "").split(/\s+/).filter(Boolean),
    body,
    readyTimeoutS: positive("--ready-timeout", values["ready-timeout"] ?? "600"),
    maxConcurrency:
      values["max-concurrency"] === undefined
        ? null
        : integer("--max-concurrency", values["max-concurrency"], 1),
    summary: !values["no-summary"],
    peft: !values["no-peft"],
  };
}

function parse(argv: string[]) {
  const text = { type: "string" } as const;
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      out: text,
      "work-dir": text,
      python: text,
      "server-entry": text,
      "server-args": text,
      body: text,
      shape: text,
      "model-dir": text,
      seed: text,
      duration: text,
      rate: text,
      rates: text,
      adapters: text,
      variants: text,
      "ready-timeout": text,
      "max-concurrency": text,
      "mooncake-trace": text,
      requests: text,
      "time-scale": text,
      "no-summary": { type: "boolean" },
      "no-peft": { type: "boolean" },
      help: { type: "boolean" },
    },
  });
}

function jsonObject(flag: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} must be a JSON object, got ${text}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UsageError(`${flag} must be a JSON object, got ${text}`);
  }
  return value as Record<string, unknown>;
}

function positive(flag: string, text: string): number {
  const value = Number(text);
  if (!(value > 0 && Number.isFinite(value)))
    throw new UsageError(`${flag}: expected a positive number, got ${text}`);
  return value;
}

function integer(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min)
    throw new UsageError(`${flag}: expected an integer >= ${min}, got ${text}`);
  return value;
}
