// Test support: the Python and the tiny fixture model (made by `npm run setup`), a plan
// builder, a logger that keeps what it is told, and a rejection catcher. Tests are entry
// points: like server/config.ts, they take their settings from the environment.

import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";
import { type InitConfig, StepFlag, type StepPlan } from "../protocol/messages.ts";
import { ExecutorClient } from "./client.ts";
import type { ExecutorLogger } from "./executor-process.ts";
import { REPO_VENV_PYTHON } from "./python-path.ts";

/** The executor's Python for tests: LORAFLEET_PYTHON (a device's own), else the repo's venv. */
export const TEST_PYTHON = process.env.LORAFLEET_PYTHON || REPO_VENV_PYTHON;

const FIXTURES =
  process.env.LORAFLEET_FIXTURES ||
  fileURLToPath(new URL("../../../.cache/fixtures", import.meta.url));
export const TINY_MODEL = join(FIXTURES, "tiny-llama");
export const TINY_ADAPTER = join(FIXTURES, "adapters", "tiny-r8");
export const HAVE_TINY = existsSync(join(TINY_MODEL, "config.json")) && existsSync(TINY_ADAPTER);

export const tinyConfig = (modelPath = TINY_MODEL): InitConfig => ({
  modelPath,
  dtype: "float32",
  device: "cpu",
  numPages: 1024,
  gpuMemoryUtilization: 0.9,
  maxLoraRank: 16,
  maxNumSeqs: 8,
  maxNumBatchedTokens: 64,
  hostCacheBytes: 64 << 20,
  loraBackend: "torch",
  cudaGraphs: false,
  quantization: "auto",
});

/** A new sequence's greedy prefill of `tokens`, its KV in pages from `firstPage` on. */
export function prefillPlan(
  stepId: number,
  seqId: number,
  tokens: number[],
  firstPage: number,
  adapterId = -1,
): StepPlan {
  const n = tokens.length;
  return {
    stepId,
    freeSeqIds: new Uint32Array(0),
    seqIds: Uint32Array.of(seqId),
    flags: Uint8Array.of(StepFlag.sample | StepFlag.new),
    numNewTokens: Int32Array.of(n),
    numCached: Int32Array.of(0),
    numPrompt: Int32Array.of(n),
    adapterIds: Int32Array.of(adapterId),
    temperature: Float32Array.of(0),
    topP: Float32Array.of(1),
    topK: Int32Array.of(0),
    minP: Float32Array.of(0),
    presencePenalty: Float32Array.of(0),
    frequencyPenalty: Float32Array.of(0),
    repetitionPenalty: Float32Array.of(1),
    seed: BigInt64Array.of(-1n),
    logprobs: Int32Array.of(-1),
    tokenIds: Int32Array.from(tokens),
    kvPages: Int32Array.from({ length: 2 * n }, (_, i) => firstPage + i),
    prefixTokenIds: new Int32Array(0),
    prefixKvPages: new Int32Array(0),
    grammarIds: Int32Array.of(-1),
  };
}

/** A shell script in `dir` standing in for the executor's Python; `spawns()` counts its starts. */
function countedPython(
  dir: string,
  name: string,
  body: string,
): { path: string; spawns: () => number } {
  const log = join(dir, `${name}.spawns`);
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\necho spawn >> "${log}"\n${body}\n`);
  chmodSync(path, 0o755);
  return { path, spawns: () => readFileSync(log, "utf8").split("\n").filter(Boolean).length };
}

/**
 * A Python, written into `dir`, that runs `python` the first time only and fails every
 * start after it (a driver gone, a GPU fallen off the bus); `spawns()` counts the starts.
 */
export function pythonThatStartsOnce(
  dir: string,
  python = TEST_PYTHON,
): { path: string; spawns: () => number } {
  const log = join(dir, "python.spawns");
  return countedPython(
    dir,
    "python",
    `[ "$(wc -l < "${log}")" -eq 1 ] && exec "${python}" "$@"\nexit 1`,
  );
}

/** A fault of lorafleet_reference/faulty_executor.py. */
export type ExecutorFault = "hang" | "crash" | "error";

/**
 * A Python, written into `dir`, that starts the executor with `fault` injected into every
 * step that starts a sequence whose first token is `token`
 * (lorafleet_reference/faulty_executor.py); `spawns()` counts the starts.
 */
export function pythonWithFault(
  dir: string,
  fault: ExecutorFault,
  token: number,
  python = TEST_PYTHON,
): { path: string; spawns: () => number } {
  // The client runs `python -m lorafleet_executor --socket ...`: the module is swapped.
  return countedPython(
    dir,
    `python-${fault}`,
    `[ "$1" = "-m" ] && shift 2\nexec "${python}" -m lorafleet_reference.faulty_executor --fault ${fault} --on-token ${token} "$@"`,
  );
}

export class RecordingLogger implements ExecutorLogger {
  readonly lines: string[] = [];
  info(_: object, message: string): void {
    this.lines.push(message);
  }
  warn(_: object, message: string): void {
    this.lines.push(message);
  }
  error(_: object, message: string): void {
    this.lines.push(message);
  }
}

/** The error `promise` rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

/**
 * The ExecutorClients of a test file, shut down after each test: `client()` makes one
 * that restarts quickly, `track()` takes one made otherwise.
 */
export function clientsShutAfterEach() {
  const clients: ExecutorClient[] = [];
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.shutdown()));
  });
  const track = (made: ExecutorClient) => {
    clients.push(made);
    return made;
  };
  const client = (options: ConstructorParameters<typeof ExecutorClient>[0] = {}) =>
    track(
      new ExecutorClient({
        pythonPath: TEST_PYTHON,
        logger: new RecordingLogger(),
        restart: { initialBackoffMs: 50, maxAttempts: 3 },
        ...options,
      }),
    );
  return { client, track };
}
