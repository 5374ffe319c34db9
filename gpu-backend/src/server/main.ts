// The backend's entry: `node gpu-backend/src/server/main.ts --model DIR [flags]`.
// Reads the config, starts the Python executor, builds engine + serving loop + app,
// listens, and shuts all of it down on SIGINT/SIGTERM.
import { pino } from "pino";
import { adapterBaseOf, checkAdapterDirectory } from "../adapters/directory-check.ts";
import { AdapterStore } from "../adapters/store.ts";
import { defaultEngineConfig, Engine } from "../engine/index.ts";
import { ExecutorClient } from "../executor/client.ts";
import { ExecutorRequestError } from "../executor/errors.ts";
import type { InitConfig } from "../protocol/messages.ts";
import { AdapterRegistry } from "../serving/adapter-registry.ts";
import { Admission, contextLength } from "../serving/admission.ts";
import { ServingMetrics } from "../serving/metrics.ts";
import { ServingLoop } from "../serving/serving-loop.ts";
import { ModelTokenizer } from "../tokenizer/tokenizer.ts";
import { CALL_FORMATS } from "../tool-calls/formats/index.ts";
import { createApp } from "./app.ts";
import { sha256BlockHasher } from "./block-hasher.ts";
import { ConfigError, describeConfig, parseServerConfig } from "./config.ts";
import { createHttpServer } from "./http-server.ts";

async function main(): Promise<void> {
  let config: ReturnType<typeof parseServerConfig>;
  try {
    config = parseServerConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`lorafleet backend: ${error.message}\n`);
    process.exit(2);
  }
  const logger = pino({ level: config.logLevel, base: { service: "gpu-backend" } });
  logger.info({ config: describeConfig(config) }, "config");

  const tokenizer = ModelTokenizer.fromDirectory(config.model);
  const initConfig: InitConfig = {
    modelPath: config.model,
    dtype: config.dtype,
    device: config.device,
    numPages: config.numPages,
    gpuMemoryUtilization: config.gpuMemoryUtilization,
    maxLoraRank: config.maxLoraRank,
    maxNumSeqs: config.maxNumSeqs,
    maxNumBatchedTokens: config.maxNumBatchedTokens,
    hostCacheBytes: config.hostCacheBytes,
    loraBackend: config.loraBackend,
    cudaGraphs: config.cudaGraphs,
    quantization: config.quantization,
  };
  const executor = new ExecutorClient({
    ...(config.socket === undefined ? {} : { socketPath: config.socket }),
    pythonPath: config.python,
    tensorParallelSize: config.tensorParallelSize,
    stageThreads: config.stageThreads,
    profileSteps: config.profileSteps,
    profileOut: config.profileOut,
    grammarThreads: config.grammarThreads,
    grammarCompileTimeoutS: config.grammarCompileTimeoutS,
    logger: logger.child({ component: "executor" }),
    timeouts: { stepFloorMs: config.stepDeadlineFloorMs },
  });
  const model = await executor.init(initConfig);
  logger.info({ model }, "executor ready");

  const engine = new Engine(
    defaultEngineConfig({
      maxNumSeqs: config.maxNumSeqs,
      maxNumBatchedTokens: config.maxNumBatchedTokens,
      maxInFlightSteps: config.maxInFlightSteps,
      maxLoras: config.maxLoras,
      maxCpuLoras: Math.max(config.maxCpuLoras, config.maxLoras),
      poolSharing: config.unifiedPaging
        ? "unified"
        : { adapterFraction: config.adapterPoolFraction },
      enablePrefixCaching: config.enablePrefixCaching,
      prefixBlockSize: config.prefixBlockSize,
    }),
    model,
    { hashBlock: sha256BlockHasher(config.model) },
  );
  // What every adapter must fit (the executor's staging checks the same): this model.
  const adapterBase = adapterBaseOf(model, config.maxLoraRank);
  const adapters = new AdapterRegistry(
    new AdapterStore({
      dir: config.adapterDir,
      cacheDir: config.adapterCacheDir,
      urlPolicy: config.adapterUrlAllow,
      // The gateway serves an adapter URL only to the backend it signed it for.
      credential: config.backendSecret,
    }),
    (dir) => checkAdapterDirectory(dir, adapterBase),
  );
  const metrics = new ServingMetrics();
  const admission = new Admission({
    maxModelLen: contextLength(config.maxModelLen, model.maxPosition, engine.kvTokenCapacity),
    maxUnfinished: config.maxNumSeqs + config.maxQueuedRequests,
  });
  const serving = new ServingLoop({
    engine,
    admission,
    executor,
    supervisor: executor,
    adapters,
    tokenizer,
    metrics,
    logger: logger.child({ component: "serving" }),
  });
  serving.start();

  const app = createApp({
    serving,
    adapters,
    tokenizer,
    metrics,
    logger: logger.child({ component: "http" }),
    servedModelName: config.servedModelName,
    toolCallFormat: CALL_FORMATS[config.toolCallParser],
    backendSecret: config.backendSecret ?? null,
    unloadAdapter: (name) => engine.unloadAdapter(name),
    maxBodyBytes: config.maxBodyBytes,
  });
  const server = createHttpServer(app, config.host);
  server.listen(config.port, config.host, () => {
    const address = server.address();
    const port = typeof address === "object" && address !== null ? address.port : config.port;
    logger.info({ url: `http://${config.host}:${port}` }, "listening");
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Drain: refuse new requests with a retriable 503 (and /ready 503) while the running
    // ones finish, up to the deadline; then cut what is left and stop.
    logger.info(
      { signal, unfinished: serving.unfinished, drainTimeoutS: config.drainTimeoutS },
      "draining",
    );
    await serving.drain(config.drainTimeoutS * 1000);
    logger.info({ signal, cut: serving.unfinished }, "shutting down");
    server.close();
    await serving.stop();
    await executor
      .shutdown()
      .catch((error: unknown) => logger.warn({ err: error }, "executor shutdown"));
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}

main().catch((error: unknown) => {
  // The executor refusing init names what it refuses (a model field, a tensor, a flag):
  // that line is the whole story, without a stack.
  const reason =
    error instanceof ExecutorRequestError
      ? `the executor refused init: ${error.message}`
      : ((error as Error).stack ?? String(error));
  process.stderr.write(`lorafleet backend failed to start: ${reason}\n`);
  process.exit(1);
});
