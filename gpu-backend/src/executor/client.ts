// ExecutorClient: the engine's handle on the Python executor. It spawns the executor on
// a Unix socket, does the init handshake, correlates requests and replies, and is the
// backend's one supervisor of it: a crash (exit), a hang (no reply in time: a step's
// deadline scales with its work, step-deadline.ts; a `stats` heartbeat covers idle times)
// or a protocol violation kills the process, fails every call in flight with the retriable
// ExecutorUnavailable, and starts a new one. Nothing waits forever: every call has a
// timeout, and calls made while no executor is ready fail at once.
//
// Restart policy (RestartPolicy): restart k in a row waits initialBackoffMs × 2^(k-1)
// (at most maxBackoffMs) before it spawns. An executor that ran stableAfterMs before it
// ended starts the count over, and so does a loss charged to requests: one with steps in
// flight, or a restart the caller asks for because of a step's outcome (the serving loop
// charges it to the steps' requests, serving/recovery.ts, and fails a request after its
// second, so these losses are bounded by the requests, not by this count). One that fails
// to start, or dies sooner with no step in flight, adds to it. After maxAttempts restarts
// in a row the client gives up: state "failed", recover() rejects, and only an explicit
// restart() starts over.
//
//   const client = new ExecutorClient({ logger });
//   const model = await client.init(config);        // spawn + handshake
//   const result = await client.step(plan);         // ExecutorUnavailable -> re-queue
//   await client.recover();                         // resolves once a fresh one is ready
//   await client.shutdown();

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type {
  ExecutorStats,
  GrammarCompiled,
  GrammarKind,
  InitConfig,
  ModelInfo,
  StagedAdapter,
  StepPlan,
  StepResult,
} from "../protocol/messages.ts";
import type { Decoded, Message, MessageBodies } from "../protocol/protocol.ts";
import type { MessageName } from "../protocol/schema.ts";
import { ExecutorUnavailable } from "./errors.ts";
import { type ExecutorLogger, ExecutorProcess } from "./executor-process.ts";
import { REPO_VENV_PYTHON } from "./python-path.ts";
import { StepDeadlines } from "./step-deadline.ts";
import { StepWatch } from "./step-watch.ts";

export interface ExecutorTimeouts {
  /** spawn -> the executor connects to the socket (Python + imports) */
  connectMs: number;
  /** init -> ready (model loading; minutes for a large model) */
  initMs: number;
  /** the least time a step may take before it counts as hung (step-deadline.ts) */
  stepFloorMs: number;
  /** a step counts as hung after this many times its predicted duration (step-deadline.ts) */
  stepSlack: number;
  /** stage_adapter / load_adapter / drop_adapter -> reply */
  adapterMs: number;
  /**
   * compile_grammar / drop_grammar -> reply; a hang detector only: the executor itself
   * refuses a compile past its --grammar-compile-timeout-s (grammar_too_complex)
   */
  grammarMs: number;
  /** a `stats` heartbeat goes out this often when the executor is ready */
  heartbeatIntervalMs: number;
  /** stats -> stats_result (the executor answers stats even during a step) */
  statsMs: number;
  /** shutdown -> ok and exit, before the process is killed */
  shutdownMs: number;
}

export interface RestartPolicy {
  /** the wait before the first restart in a row; doubles with each restart after it */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** restarts in a row (no executor stable between them) before the client gives up */
  maxAttempts: number;
  /** an executor that ran this long before it ended starts the count (and backoff) over */
  stableAfterMs: number;
}

const DEFAULT_TIMEOUTS: ExecutorTimeouts = {
  connectMs: 60_000,
  initMs: 600_000,
  stepFloorMs: 30_000,
  stepSlack: 10,
  adapterMs: 300_000,
  grammarMs: 120_000,
  heartbeatIntervalMs: 5_000,
  statsMs: 30_000,
  shutdownMs: 30_000,
};

const DEFAULT_RESTART: RestartPolicy = {
  initialBackoffMs: 500,
  maxBackoffMs: 30_000,
  maxAttempts: 5,
  stableAfterMs: 60_000,
};

export interface ExecutorClientOptions {
  /** default: the repo's .venv (the server passes its --python) */
  pythonPath?: string;
  /** default: executor.sock in a fresh temp dir, removed at shutdown */
  socketPath?: string;
  /** added to process.env for the child */
  env?: NodeJS.ProcessEnv;
  // The executor's flags (executor/lorafleet_executor/runtime/options.py), its only
  // settings besides `init`; unset ones take the executor's defaults.
  /** --tensor-parallel-size: ranks (GPUs) of the executor's tensor-parallel group */
  tensorParallelSize?: number | undefined;
  /** --stage-threads: adapters staged at once */
  stageThreads?: number | undefined;
  /** --profile-steps FIRST:COUNT: served steps to profile (bench/README.md) */
  profileSteps?: string | undefined;
  /** --profile-out PREFIX: where that profile goes */
  profileOut?: string | undefined;
  /** --grammar-threads: threads filling a step's grammar masks */
  grammarThreads?: number | undefined;
  /** --grammar-compile-timeout-s: a grammar compiling longer is refused */
  grammarCompileTimeoutS?: number | undefined;
  /** receives the client's events and the child's stdout/stderr lines */
  logger?: ExecutorLogger;
  timeouts?: Partial<ExecutorTimeouts>;
  restart?: Partial<RestartPolicy>;
}

export type ExecutorState = "idle" | "starting" | "ready" | "restarting" | "failed" | "closed";

const stderrLogger: ExecutorLogger = {
  info: (_, message) => process.stderr.write(`executor: ${message}\n`),
  warn: (_, message) => process.stderr.write(`executor: ${message}\n`),
  error: (_, message) => process.stderr.write(`executor: ${message}\n`),
};

export class ExecutorClient {
  readonly #pythonPath: string;
  /** the caller's socket path; else one in #tempDir, made at the first launch */
  readonly #socketPath: string | undefined;
  #tempDir: string | undefined;
  readonly #env: NodeJS.ProcessEnv;
  readonly #flags: readonly string[];
  readonly #log: ExecutorLogger;
  readonly #timeouts: ExecutorTimeouts;
  readonly #policy: RestartPolicy;
  #state: ExecutorState = "idle";
  #config: InitConfig | undefined;
  #process: ExecutorProcess | undefined;
  #model: ModelInfo | undefined;
  #restarting: Promise<ModelInfo> | undefined;
  /** ready and not yet asked anything: recover() can hand it out as it is */
  #fresh = false;
  #readyAt = 0;
  /** restarts since an executor last ran stableAfterMs: the backoff's exponent, give-up count */
  #restartsInARow = 0;
  /** why the last executor ended or the last start failed (the give-up message names it) */
  #lastFailure = "";
  /** set while "failed": what recover() rejects with */
  #failure: Error | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #heartbeatInFlight = false;
  /** the step cost model: kept across restarts (same model, same device) */
  #deadlines: StepDeadlines | undefined;
  /** the steps the current executor has not answered */
  #steps: StepWatch | undefined;

  constructor(options: ExecutorClientOptions = {}) {
    this.#pythonPath = options.pythonPath ?? REPO_VENV_PYTHON;
    this.#socketPath = options.socketPath;
    this.#flags = executorFlags(options);
    this.#env = { ...process.env, PYTHONUNBUFFERED: "1", ...options.env };
    this.#log = options.logger ?? stderrLogger;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.#policy = { ...DEFAULT_RESTART, ...options.restart };
  }

  get state(): ExecutorState {
    return this.#state;
  }

  /** The ready executor's model, as its last `ready` said. */
  get model(): ModelInfo | undefined {
    return this.#model;
  }

  /** The executor's pid while one runs (for logs and tests). */
  get pid(): number | undefined {
    return this.#process?.alive ? this.#process.pid : undefined;
  }

  /** Spawns the executor and does the handshake; rejects without retrying on failure. */
  async init(config: InitConfig): Promise<ModelInfo> {
    if (this.#state !== "idle") {
      throw new Error(
        `init is called once (state ${this.#state}); recover() brings a new executor`,
      );
    }
    this.#config = config;
    this.#state = "starting";
    try {
      return await this.#launch();
    } catch (error) {
      if (this.#state === "starting") {
        this.#state = "failed";
        const reason = (error as Error).message;
        this.#failure = new ExecutorUnavailable(`the executor did not start: ${reason}`);
      }
      throw error;
    }
  }

  /**
   * A fresh executor for a caller whose calls failed: joins the restart under way, hands
   * out one that has not served a request yet, or else replaces the running one (whose
   * replies the caller could not use). Rejects with ExecutorUnavailable when the restart
   * policy gives up, and at once while the client is "failed".
   */
  recover(): Promise<ModelInfo> {
    switch (this.#state) {
      case "closed":
        return Promise.reject(new ExecutorUnavailable("the executor client is shut down"));
      case "idle":
      case "starting":
        return Promise.reject(new Error(`recover before init finished (state ${this.#state})`));
      case "restarting":
        return this.#restarting as Promise<ModelInfo>;
      case "ready":
        if (this.#fresh) return Promise.resolve(this.#model as ModelInfo);
        // Asked after a step's outcome the caller could not use: charged to its requests.
        this.#lost(this.#process as ExecutorProcess, "restart requested", true);
        return this.#restarting as Promise<ModelInfo>;
      case "failed":
        return Promise.reject(this.#failure);
    }
  }

  /**
   * recover(), and more: from "failed" it starts over (a new count of restarts in a row),
   * and a `config` other than the last one is what the next executor starts with.
   */
  restart(config?: InitConfig): Promise<ModelInfo> {
    if (config !== undefined && JSON.stringify(config) !== JSON.stringify(this.#config)) {
      this.#config = config;
      this.#fresh = false; // it runs with the old config
    }
    if (this.#state !== "failed") return this.recover();
    this.#restartsInARow = 0;
    return this.#beginRestart();
  }

  async stageAdapter(adapterId: number, path: string): Promise<StagedAdapter> {
    const message = { type: "stage_adapter", body: { adapterId, path } } as const;
    return this.#reply(await this.#call(message, this.#timeouts.adapterMs), "adapter_staged");
  }

  async loadAdapter(adapterId: number, pages: Int32Array): Promise<void> {
    const message = { type: "load_adapter", body: { adapterId, pages } } as const;
    this.#reply(await this.#call(message, this.#timeouts.adapterMs), "ok");
  }

  async dropAdapter(adapterId: number, tier: "pool" | "host"): Promise<void> {
    const message = { type: "drop_adapter", body: { adapterId, tier } } as const;
    this.#reply(await this.#call(message, this.#timeouts.adapterMs), "ok");
  }

  /** Rejects with ExecutorRequestError grammar_invalid / grammar_too_complex for a bad one. */
  async compileGrammar(
    grammarId: number,
    kind: GrammarKind,
    source: string,
  ): Promise<GrammarCompiled> {
    const message = { type: "compile_grammar", body: { grammarId, kind, source } } as const;
    return this.#reply(await this.#call(message, this.#timeouts.grammarMs), "grammar_compiled");
  }

  async dropGrammar(grammarId: number): Promise<void> {
    const message = { type: "drop_grammar", body: { grammarId } } as const;
    this.#reply(await this.#call(message, this.#timeouts.grammarMs), "ok");
  }

  /** A step's deadline is its StepWatch's (step-deadline.ts), not a fixed timeout. */
  async step(plan: StepPlan): Promise<StepResult> {
    const reply = this.#call({ type: "step", body: plan }, null);
    const watch = this.#steps;
    const watched = this.#state === "ready" ? watch?.sent(plan) : undefined;
    let answered = false;
    try {
      const result = this.#reply(await reply, "step_result");
      answered = true;
      return result;
    } finally {
      if (watched !== undefined) watch?.settled(watched, answered);
    }
  }

  async stats(): Promise<ExecutorStats> {
    const reply = await this.#call({ type: "stats", body: {} }, this.#timeouts.statsMs);
    return this.#reply(reply, "stats_result");
  }

  /** Asks the executor to finish and exit; kills it if it does not in time. Idempotent. */
  async shutdown(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    clearInterval(this.#heartbeat);
    const proc = this.#process;
    if (proc?.alive) {
      const timeout = this.#timeouts.shutdownMs;
      await proc.request({ type: "shutdown", body: {} }, timeout).catch(() => {});
      await Promise.race([proc.ended, sleep(timeout, undefined, { ref: false })]);
      proc.kill("shut down");
    }
    if (this.#tempDir !== undefined) rmSync(this.#tempDir, { recursive: true, force: true });
  }

  /** timeoutMs null: the caller watches the call itself (steps) */
  #call(message: Message, timeoutMs: number | null): Promise<Decoded> {
    const proc = this.#process;
    if (this.#state !== "ready" || proc === undefined) {
      return Promise.reject(
        new ExecutorUnavailable(`no executor is ready (state: ${this.#state})`),
      );
    }
    this.#fresh = false;
    return proc.request(message, timeoutMs);
  }

  #reply<K extends MessageName>(reply: Decoded, type: K): MessageBodies[K] {
    // ExecutorProcess already refused a reply of the wrong type; this narrows it.
    if (reply.type !== type) throw new Error(`expected ${type}, got ${reply.type}`);
    return reply.body as MessageBodies[K];
  }

  async #launch(): Promise<ModelInfo> {
    const proc = await ExecutorProcess.start({
      pythonPath: this.#pythonPath,
      socketPath: this.#socketPath ?? this.#defaultSocketPath(),
      flags: this.#flags,
      env: this.#env,
      connectTimeoutMs: this.#timeouts.connectMs,
      logger: this.#log,
    });
    this.#process = proc;
    let reply: Decoded;
    try {
      if (this.#state === "closed")
        throw new ExecutorUnavailable("the executor client is shut down");
      const init = { type: "init", body: this.#config as InitConfig } as const;
      reply = await proc.request(init, this.#timeouts.initMs);
    } catch (error) {
      proc.kill(`init failed: ${(error as Error).message}`);
      throw error;
    }
    const model = this.#reply(reply, "ready");
    if (this.#isClosed()) {
      proc.kill("the executor client is shut down");
      throw new ExecutorUnavailable("the executor client is shut down");
    }
    this.#deadlines ??= new StepDeadlines(model, {
      floorMs: this.#timeouts.stepFloorMs,
      slack: this.#timeouts.stepSlack,
    });
    this.#steps = new StepWatch(this.#deadlines, (reason) => proc.kill(reason));
    this.#model = model;
    this.#state = "ready";
    this.#fresh = true;
    this.#readyAt = Date.now();
    void proc.ended.then((reason) => this.#lost(proc, reason, proc.endedDuring("step")));
    this.#startHeartbeat();
    this.#log.info({ pid: proc.pid, model }, "executor ready");
    return model;
  }

  /**
   * A ready executor is gone (or is being replaced): fail its calls, start a new one.
   * `charged`: the loss is charged to the requests of the steps in flight (see the top).
   */
  #lost(proc: ExecutorProcess, reason: string, charged: boolean): void {
    if (proc !== this.#process || this.#state !== "ready") return;
    proc.kill(reason);
    const stable = Date.now() - this.#readyAt >= this.#policy.stableAfterMs;
    if (stable || charged) this.#restartsInARow = 0;
    this.#lastFailure = reason;
    this.#log.error({ pid: proc.pid, charged }, `executor lost (${reason}); restarting`);
    void this.#beginRestart().catch(() => {}); // callers see it through recover()
  }

  #beginRestart(): Promise<ModelInfo> {
    this.#state = "restarting";
    this.#restarting = this.#restartLoop();
    return this.#restarting;
  }

  async #restartLoop(): Promise<ModelInfo> {
    while (this.#restartsInARow < this.#policy.maxAttempts) {
      const backoff = Math.min(
        this.#policy.maxBackoffMs,
        this.#policy.initialBackoffMs * 2 ** this.#restartsInARow,
      );
      this.#restartsInARow++;
      await sleep(backoff);
      if (this.#isClosed()) break;
      try {
        return await this.#launch();
      } catch (error) {
        this.#lastFailure = (error as Error).message;
        const attempt = this.#restartsInARow;
        this.#log.error({ attempt }, `executor restart failed: ${this.#lastFailure}`);
      }
    }
    if (this.#isClosed()) throw new ExecutorUnavailable("the executor client is shut down");
    this.#state = "failed";
    this.#failure = new ExecutorUnavailable(
      `the executor did not come back (attempts: ${this.#policy.maxAttempts}): ${this.#lastFailure}`,
    );
    this.#log.error({}, `giving up on the executor: ${this.#failure.message}`);
    throw this.#failure;
  }

  #defaultSocketPath(): string {
    this.#tempDir ??= mkdtempSync(join(tmpdir(), "lorafleet-"));
    return join(this.#tempDir, "executor.sock");
  }

  /** A method, not a field check, so TS does not narrow it away across awaits. */
  #isClosed(): boolean {
    return this.#state === "closed";
  }

  #startHeartbeat(): void {
    if (this.#heartbeat !== undefined) return;
    this.#heartbeat = setInterval(() => {
      const proc = this.#process;
      if (this.#state !== "ready" || proc === undefined || this.#heartbeatInFlight) return;
      this.#heartbeatInFlight = true;
      // A reply-less heartbeat kills the process through the request timeout.
      proc
        .request({ type: "stats", body: {} }, this.#timeouts.statsMs)
        .catch(() => {})
        .finally(() => {
          this.#heartbeatInFlight = false;
        });
    }, this.#timeouts.heartbeatIntervalMs);
    this.#heartbeat.unref();
  }
}

/** The executor's command-line flags from the client's options; a bad count fails here. */
function executorFlags(options: ExecutorClientOptions): string[] {
  const flags: string[] = [];
  const counts = [
    ["--tensor-parallel-size", "tensorParallelSize", options.tensorParallelSize],
    ["--stage-threads", "stageThreads", options.stageThreads],
    ["--grammar-threads", "grammarThreads", options.grammarThreads],
  ] as const;
  for (const [flag, name, value] of counts) {
    if (value === undefined) continue;
    if (!(Number.isInteger(value) && value >= 1)) {
      throw new RangeError(`${name} must be an integer >= 1, got ${value}`);
    }
    flags.push(flag, String(value));
  }
  const timeout = options.grammarCompileTimeoutS;
  if (timeout !== undefined) {
    if (!(timeout > 0)) throw new RangeError(`grammarCompileTimeoutS must be > 0, got ${timeout}`);
    flags.push("--grammar-compile-timeout-s", String(timeout));
  }
  if (options.profileSteps !== undefined) flags.push("--profile-steps", options.profileSteps);
  if (options.profileOut !== undefined) flags.push("--profile-out", options.profileOut);
  return flags;
}
