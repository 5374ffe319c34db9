// The backend's one typed config: command-line flags over LORAFLEET_* environment
// variables over defaults, validated with zod at start and passed down; nothing below
// main.ts reads the environment.
import { basename, resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { AdapterUrlPolicy } from "../adapters/url-policy.ts";
import { MAX_IN_FLIGHT_STEPS } from "../engine/config.ts";
import { REPO_VENV_PYTHON } from "../executor/python-path.ts";
import { CALL_FORMAT_NAMES } from "../tool-calls/formats/index.ts";

export class ConfigError extends Error {
  override name = "ConfigError";
}

const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().nonnegative();
const flag = z
  .enum(["true", "false", "1", "0"])
  .transform((value) => value === "true" || value === "1");

const ServerConfigSchema = z.object({
  /** HF-format model directory (config.json, *.safetensors, tokenizer.json) */
  model: z.string().min(1),
  /** the name clients put in `model` for the base model; default the directory's name */
  servedModelName: z.string().min(1).optional(),
  host: z.string().min(1).default("127.0.0.1"),
  port: z.coerce.number().int().min(0).max(65535).default(8000),
  /** the Unix socket the executor connects to; default a fresh temp dir's, removed at exit */
  socket: z.string().min(1).optional(),
  /** the executor's Python (LORAFLEET_PYTHON, as scripts/setup.mjs names it) */
  python: z.string().min(1).default(REPO_VENV_PYTHON),
  device: z.enum(["auto", "cpu", "cuda"]).default("auto"),
  dtype: z.enum(["auto", "bfloat16", "float16", "float32"]).default("auto"),
  /** share of GPU memory the executor may use in all (vLLM's --gpu-memory-utilization) */
  gpuMemoryUtilization: z.coerce.number().gt(0).max(1).default(0.9),
  /** pages in the unified pool; 0 = derive from gpuMemoryUtilization */
  numPages: nonNegativeInt.default(0),
  maxLoraRank: positiveInt.default(64),
  /** adapters resident in the GPU pool at once */
  maxLoras: positiveInt.default(32),
  /** adapters kept in the executor's host tier */
  maxCpuLoras: positiveInt.default(256),
  /** bound of the executor's host tier in bytes */
  hostCacheBytes: nonNegativeInt.default(8 * 1024 ** 3),
  /** tokens per step (the scheduler's token budget) */
  maxNumBatchedTokens: positiveInt.default(2048),
  maxNumSeqs: positiveInt.default(128),
  /** steps sent ahead of their results: 3 keeps the next step queued in the executor
   * while it reads one, so its host work overlaps the GPU's (issue 7 notes) */
  maxInFlightSteps: positiveInt.max(MAX_IN_FLIGHT_STEPS).default(3),
  /** longest prompt + completion; 0 = the model's max_position_embeddings */
  maxModelLen: nonNegativeInt.default(0),
  /** requests waiting beyond this are refused with 429 */
  maxQueuedRequests: positiveInt.default(1024),
  /**
   * the least time a step may run before the executor counts as hung; longer steps get
   * more, from their work and the measured speed (executor/step-deadline.ts)
   */
  stepDeadlineFloorMs: positiveInt.default(30_000),
  /** on SIGTERM, how long running requests may take to finish before they are cut */
  drainTimeoutS: nonNegativeInt.default(30),
  /** request bodies above this many bytes are refused (413) */
  maxBodyBytes: positiveInt.default(16 * 1024 ** 2),
  /** where adapters named by the store live (one PEFT directory per adapter name) and URL downloads are cached */
  adapterDir: z.string().min(1).default(".cache/adapters"),
  /** where adapters downloaded from URLs are cached; default `<adapter-dir>/.remote` */
  adapterCacheDir: z.string().min(1).optional(),
  /**
   * origins (`scheme://host[:port]`, comma-separated) the `lorafleet` field's adapter URLs
   * may point at: the gateway's. Empty = every adapter URL is refused (400).
   */
  adapterUrlAllow: z
    .string()
    .default("")
    .transform((list, ctx) => {
      try {
        return AdapterUrlPolicy.parse(list);
      } catch (error) {
        ctx.addIssue({ code: "custom", message: (error as Error).message });
        return z.NEVER;
      }
    }),
  /** shared secret of /internal/* and the gateway's `lorafleet` field; unset = those are refused */
  backendSecret: z.string().min(16).optional(),
  loraBackend: z.enum(["triton", "torch"]).default("triton"),
  cudaGraphs: flag.default(true),
  /** fp8: the base's q k v o gate up down weights quantized to float8 at load (README
   * "FP8"); auto: as the checkpoint is (FP8 checkpoints are served in FP8) */
  quantization: z.enum(["auto", "fp8"]).default("auto"),
  /** false: the S-LoRA paper's "no-unify-mem" ablation, a pool split statically (below) */
  unifiedPaging: flag.default(true),
  /** with --unified-paging false: the share of pool pages only adapters may hold (the rest: KV) */
  adapterPoolFraction: z.coerce.number().gt(0).lt(1).default(0.5),
  /** keep finished requests' full KV blocks for later prompts with the same prefix (vLLM's APC) */
  enablePrefixCaching: flag.default(true),
  /** tokens per cached KV block: the unit of prefix reuse */
  prefixBlockSize: positiveInt.default(16),
  /** GPUs of one tensor-parallel group behind this backend: executor ranks, one engine */
  tensorParallelSize: positiveInt.default(1),
  /** adapters the executor stages at once; unset: the executor's default (4) */
  stageThreads: positiveInt.optional(),
  /** served steps the executor profiles, FIRST:COUNT (bench/README.md); unset: none */
  profileSteps: z
    .string()
    .regex(/^\d+:[1-9]\d*$/, "must be FIRST:COUNT, COUNT >= 1")
    .optional(),
  /** where that profile goes: PREFIX.json.gz and PREFIX.txt (with --profile-steps) */
  profileOut: z.string().min(1).optional(),
  /**
   * how the model writes tool calls (vLLM's flag): hermes / qwen, llama3_json, mistral, or
   * smollm2, the default model's format (src/tool-calls/README.md)
   */
  toolCallParser: z.enum(CALL_FORMAT_NAMES).default("smollm2"),
  /** threads that fill a step's grammar masks in the executor; unset: its default (4) */
  grammarThreads: positiveInt.optional(),
  /** a grammar whose compile takes longer is refused (400); unset: the executor's 10 s */
  grammarCompileTimeoutS: z.coerce.number().positive().optional(),
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

type ServerConfigInput = z.input<typeof ServerConfigSchema>;
export type ServerConfig = z.output<typeof ServerConfigSchema> & { servedModelName: string };

/** `maxLoraRank` -> `max-lora-rank` (flag) and `LORAFLEET_MAX_LORA_RANK` (env). */
const keys = Object.keys(ServerConfigSchema.shape) as (keyof ServerConfigInput)[];
const flagName = (key: string) => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const envName = (key: string) => `LORAFLEET_${flagName(key).replaceAll("-", "_").toUpperCase()}`;

/**
 * @example parseServerConfig(["--model", "m", "--port", "9000"], process.env)
 */
export function parseServerConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ServerConfig {
  // Every flag takes a value (`--cuda-graphs false`), as its env twin does.
  const options = Object.fromEntries(
    keys.map((key) => [flagName(key), { type: "string" }]),
  ) as Record<string, { type: "string" }>;
  let values: Record<string, unknown>;
  try {
    ({ values } = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  const raw: Record<string, unknown> = {};
  for (const key of keys) {
    raw[key] = values[flagName(key)] ?? env[envName(key)];
  }
  const parsed = ServerConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map(
      (issue) =>
        `--${flagName(String(issue.path[0]))} (${envName(String(issue.path[0]))}): ${issue.message}`,
    );
    throw new ConfigError(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  const config = parsed.data;
  return {
    ...config,
    model: resolve(config.model),
    adapterDir: resolve(config.adapterDir),
    adapterCacheDir:
      config.adapterCacheDir === undefined ? undefined : resolve(config.adapterCacheDir),
    servedModelName: config.servedModelName ?? basename(resolve(config.model)),
  };
}

/** The config as printed at start; the secret never appears. */
export function describeConfig(config: ServerConfig): Record<string, unknown> {
  return {
    ...config,
    adapterUrlAllow: config.adapterUrlAllow.origins,
    backendSecret: config.backendSecret === undefined ? "(unset)" : "(set)",
  };
}
