// The serving loop losing its executor, against the real client, engine and Python
// executor (tiny model): one supervisor decides how often to restart, whoever asks.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { adapterBaseOf, checkAdapterDirectory } from "../adapters/directory-check.ts";
import { AdapterStore } from "../adapters/store.ts";
import { defaultEngineConfig, Engine } from "../engine/index.ts";
import { greedy, internBlockHasher } from "../engine/testing.ts";
import {
  clientsShutAfterEach,
  HAVE_TINY,
  pythonThatStartsOnce,
  TINY_MODEL,
  tinyConfig,
} from "../executor/test-fixtures.ts";
import { ModelTokenizer } from "../tokenizer/tokenizer.ts";
import { AdapterRegistry } from "./adapter-registry.ts";
import { Admission, contextLength } from "./admission.ts";
import { BackendUnavailableError, EXECUTOR_GAVE_UP } from "./errors.ts";
import type { GenerationStream } from "./generation-stream.ts";
import { ServingMetrics } from "./metrics.ts";
import { type GenerateRequest, ServingLoop } from "./serving-loop.ts";

const dir = mkdtempSync(join(tmpdir(), "lorafleet-recovery-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const { client } = clientsShutAfterEach();

const request: GenerateRequest = {
  tenant: "default",
  cacheSalt: "default",
  adapterName: null,
  remoteAdapter: null,
  promptIds: [5, 6, 7],
  sampling: greedy,
  maxTokens: null,
  stop: [],
  stopTokenIds: [],
  ignoreEos: true,
  grammar: null,
  keepSpecialTokens: false,
  deadlineMs: null,
};

async function readToEnd(stream: GenerationStream): Promise<void> {
  for await (const _ of stream);
}

describe.skipIf(!HAVE_TINY)("the serving loop losing its executor (tiny model)", () => {
  it("is restarted maxAttempts times in all, then the loop fails: 503s, phase failed", async () => {
    // Found by issue 19: the loop retried the client's restart 3 times, and the client
    // tried 5 starts each time: 15 restarts of an executor that could not start.
    const python = pythonThatStartsOnce(dir);
    const executor = client({
      pythonPath: python.path,
      restart: { initialBackoffMs: 10, maxAttempts: 3 },
    });
    const model = await executor.init(tinyConfig());
    const engine = new Engine(defaultEngineConfig({ maxNumSeqs: 8 }), model, {
      hashBlock: internBlockHasher(),
    });
    const loop = new ServingLoop({
      engine,
      admission: new Admission({
        maxModelLen: contextLength(0, model.maxPosition, engine.kvTokenCapacity),
        maxUnfinished: 8,
      }),
      executor,
      supervisor: executor,
      adapters: new AdapterRegistry(new AdapterStore({ dir }), (adapterDir) =>
        checkAdapterDirectory(adapterDir, adapterBaseOf(model, 16)),
      ),
      tokenizer: ModelTokenizer.fromDirectory(TINY_MODEL),
      metrics: new ServingMetrics(),
      logger: pino({ level: "silent" }),
    });
    loop.start();
    try {
      expect(loop.phase).toBe("serving");
      const stream = await loop.generate(request, loop.reserve(1, "n"));
      process.kill(executor.pid as number, "SIGKILL");
      const failed = await readToEnd(stream).catch((error: unknown) => error);
      expect(failed).toBeInstanceOf(BackendUnavailableError);
      expect((failed as Error).message).toBe(EXECUTOR_GAVE_UP);
      expect(python.spawns()).toBe(1 + 3); // init, then maxAttempts restarts: no more
      expect(loop.phase).toBe("failed");
      expect(loop.unfinished).toBe(0);
      // New requests are refused at once, and nothing tries another start.
      const refused = await loop
        .generate(request, loop.reserve(1, "n"))
        .catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(BackendUnavailableError);
      expect((refused as Error).message).toBe(EXECUTOR_GAVE_UP);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(python.spawns()).toBe(4);
    } finally {
      await loop.stop();
    }
  });
});
