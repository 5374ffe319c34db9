// The async loop that drives the pure engine: schedule -> send adapter ops and the
// step plan to the executor (up to the engine's maxInFlightSteps steps in flight, so
// step N+1 is planned while N runs) -> update with each result -> deliver tokens to
// the per-request streams. An executor crash re-queues everything through
// engine.executorRestarted once a new executor is up, or fails it with a retriable
// error when none comes.
import type { Logger } from "pino";
import type { AdapterOp, Engine, RequestOutput, SamplingParams } from "../engine/index.ts";
import { ExecutorRequestError, ExecutorUnavailable } from "../executor/errors.ts";
import type { ModelInfo, StepPlan } from "../protocol/messages.ts";
import type { ModelTokenizer } from "../tokenizer/tokenizer.ts";
import type { AdapterRegistry } from "./adapter-registry.ts";
import {
  AdapterLoadError,
  BackendUnavailableError,
  GenerationFailedError,
  PromptTooLongError,
  QueueFullError,
} from "./errors.ts";
import type { ExecutorLink, ExecutorRestarter, RemoteAdapter } from "./executor-link.ts";
import { GenerationStream } from "./generation-stream.ts";
import type { ServingMetrics } from "./metrics.ts";

export interface GenerateRequest {
  /** the fair-share unit; "default" for direct callers */
  tenant: string;
  /** null = base model, else an adapter name (registered or known to the store) */
  adapterName: string | null;
  /** the gateway's adapter (overrides adapterName) */
  remoteAdapter: RemoteAdapter | null;
  promptIds: number[];
  sampling: SamplingParams;
  /** null = as many as the context allows */
  maxTokens: number | null;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** absolute ms, null = none */
  deadlineMs: number | null;
}

/** Seats under the queue bound held for one client request (ServingLoop.reserve). */
export interface Seats {
  remaining: number;
  take: () => void;
  release: () => void;
}

export interface ServingLimits {
  /** prompt + completion tokens at most */
  maxModelLen: number;
  /** unfinished requests (running + waiting) at most; beyond it QueueFullError */
  maxUnfinished: number;
}

/** A loop with requests pending sleeps at most this long, so deadlines pass without traffic. */
const IDLE_TICK_MS = 50;
/** Attempts to bring a crashed executor back before failing its requests. */
const RESTART_ATTEMPTS = 3;

export class ServingLoop {
  readonly #engine: Engine;
  readonly #executor: ExecutorLink;
  readonly #restart: ExecutorRestarter;
  readonly #adapters: AdapterRegistry;
  readonly #tokenizer: ModelTokenizer;
  readonly #limits: ServingLimits;
  readonly #metrics: ServingMetrics;
  readonly #log: Logger;
  readonly #streams = new Map<string, GenerationStream>();
  #nextId = 0;
  /** performance.now() of the last step result (step wall times, metrics) */
  #lastStepResultAt = 0;
  #wake: (() => void) | null = null;
  #running = false;
  #stopped: Promise<void> | null = null;
  /** bumped on each executor restart; outcomes of calls from an older epoch are ignored */
  #epoch = 0;
  #recovering: Promise<void> | null = null;
  /** set by drain(): new requests are refused, running ones finish */
  #draining = false;
  /** seats held by reserve() and not used yet: counted against the queue bound */
  #reserved = 0;

  constructor(deps: {
    engine: Engine;
    executor: ExecutorLink;
    restart: ExecutorRestarter;
    adapters: AdapterRegistry;
    tokenizer: ModelTokenizer;
    limits: ServingLimits;
    metrics: ServingMetrics;
    logger: Logger;
  }) {
    this.#engine = deps.engine;
    this.#executor = deps.executor;
    this.#restart = deps.restart;
    this.#adapters = deps.adapters;
    this.#tokenizer = deps.tokenizer;
    this.#limits = deps.limits;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
  }

  get unfinished(): number {
    return this.#streams.size;
  }

  /** prompt + completion tokens at most */
  get maxModelLen(): number {
    return this.#limits.maxModelLen;
  }

  /** unfinished requests (running + waiting) at most */
  get maxUnfinished(): number {
    return this.#limits.maxUnfinished;
  }

  get available(): boolean {
    return this.#recovering === null && !this.#draining;
  }

  /** true once drain() was called */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Graceful shutdown, first half: from now on new requests get BackendUnavailableError
   * (a retriable 503; /ready answers 503, so the gateway routes around this backend)
   * while unfinished ones run on. Resolves once none is left or `timeoutMs` has passed;
   * call stop() after it.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.#draining = true;
    const deadline = Date.now() + timeoutMs;
    while (this.#streams.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#stopped = this.#run();
  }

  /** Stops scheduling; unfinished requests end with BackendUnavailableError. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#poke();
    await this.#stopped;
    this.#failAll(new BackendUnavailableError("the server is shutting down"));
  }

  /**
   * Admits a request and returns its stream. Throws QueueFullError, PromptTooLongError,
   * UnknownModelError, AdapterLoadError, BackendUnavailableError or the engine's
   * InvalidRequestError before anything is queued.
   */
  /**
   * Holds `count` seats under the queue bound at once, all or none (QueueFullError): one
   * client request's n choices × prompts. Without it, concurrent multi-choice requests
   * each got part of the room and then all failed (100 batch lines × n=16 against a bound
   * of 1152: every line 429). generate(request, seats) takes one; release() returns the rest.
   */
  reserve(count: number): Seats {
    if (this.#streams.size + this.#reserved + count > this.#limits.maxUnfinished) {
      throw new QueueFullError(
        `The server has ${this.#streams.size + this.#reserved} requests in progress and room for ${this.#limits.maxUnfinished}; this one needs ${count}. Retry later.`,
        1,
      );
    }
    this.#reserved += count;
    const seats = {
      remaining: count,
      take: () => {
        seats.remaining--;
        this.#reserved--;
      },
      release: () => {
        this.#reserved -= seats.remaining;
        seats.remaining = 0;
      },
    };
    return seats;
  }

  async generate(request: GenerateRequest, seats: Seats | null = null): Promise<GenerationStream> {
    if (this.#draining) {
      throw new BackendUnavailableError("this backend is shutting down; retry on another");
    }
    if (!this.available) {
      throw new BackendUnavailableError("the executor is restarting; retry shortly");
    }
    const room = this.#limits.maxModelLen - request.promptIds.length;
    if (room < 1 || (request.maxTokens !== null && request.maxTokens > room)) {
      throw new PromptTooLongError(
        `This model's maximum context length is ${this.#limits.maxModelLen} tokens. However, you requested ${request.promptIds.length + (request.maxTokens ?? 1)} tokens (${request.promptIds.length} in the messages, ${request.maxTokens ?? 1} in the completion). Please reduce the length of the messages or completion.`,
      );
    }
    if (seats === null) this.#checkQueue();
    else if (seats.remaining < 1) throw new Error("generate: no reserved seat left");
    const adapter = request.remoteAdapter
      ? await this.#adapters.resolveRemote(request.remoteAdapter)
      : request.adapterName === null
        ? null
        : await this.#adapters.resolve(request.adapterName);
    // Resolving may have awaited a download: look again.
    if (seats === null) this.#checkQueue();
    const id = `req-${++this.#nextId}`;
    const stream = new GenerationStream(id, this.#tokenizer, request.promptIds, request.stop, () =>
      this.#cancel(id),
    );
    const now = Date.now();
    this.#engine.addRequest({
      id,
      tenant: request.tenant,
      adapter,
      promptTokenIds: request.promptIds,
      sampling: request.sampling,
      maxTokens: request.maxTokens ?? room,
      stopTokenIds: request.stopTokenIds,
      ignoreEos: request.ignoreEos,
      deadlineMs: request.deadlineMs,
      arrivalMs: now,
    });
    seats?.take();
    this.#streams.set(id, stream);
    this.#metrics.requestAdmitted(id, now);
    this.#poke();
    return stream;
  }

  #checkQueue(): void {
    if (this.#streams.size + this.#reserved >= this.#limits.maxUnfinished) {
      throw new QueueFullError(
        `The server has ${this.#streams.size + this.#reserved} requests in progress, its limit; retry later.`,
        1,
      );
    }
  }

  async #run(): Promise<void> {
    while (this.#running) {
      if (this.#recovering === null && this.#engine.canSchedule()) {
        const { plan, adapterOps, finished } = this.#engine.schedule(Date.now());
        for (const op of adapterOps) this.#sendAdapterOp(op);
        if (plan) this.#sendStep(plan);
        this.#deliver(finished, GenerationFailedError);
        this.#metrics.observeEngine(this.#engine.stats());
        if (plan) continue;
      }
      await this.#sleep();
    }
  }

  /** Until something happens; with requests pending, also at most IDLE_TICK_MS (deadlines). */
  #sleep(): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#engine.hasUnfinishedRequests()
        ? setTimeout(resolve, IDLE_TICK_MS)
        : undefined;
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  #poke(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #sendStep(plan: StepPlan): void {
    const epoch = this.#epoch;
    const sentAt = performance.now();
    this.#executor.step(plan).then(
      (result) => {
        if (epoch !== this.#epoch) return;
        // Steps overlap: this one had the executor to itself from the later of its send
        // and the result before it.
        const now = performance.now();
        const wallMs = now - Math.max(sentAt, this.#lastStepResultAt);
        this.#lastStepResultAt = now;
        this.#metrics.stepDone(wallMs, result.forwardMs, result.sampleMs);
        try {
          this.#deliver(this.#engine.update(result, Date.now()), GenerationFailedError);
        } catch (error) {
          // The engine and executor disagree (e.g. StepResultError): a fresh executor and
          // re-queued requests put them back in step.
          this.#executorLost(error);
        }
        this.#poke();
      },
      (error: unknown) => {
        if (epoch !== this.#epoch) return;
        if (error instanceof ExecutorRequestError) {
          this.#log.error({ err: error, stepId: plan.stepId }, "step failed");
          this.#deliver(this.#engine.stepFailed(plan.stepId, error.message), GenerationFailedError);
          this.#poke();
        } else {
          this.#executorLost(error);
        }
      },
    );
  }

  #sendAdapterOp(op: AdapterOp): void {
    const epoch = this.#epoch;
    const sentAt = performance.now();
    const timed = (kind: "stage" | "load") =>
      this.#metrics.adapterOpDone(kind, (performance.now() - sentAt) / 1000);
    const failed = (error: unknown) => {
      if (epoch !== this.#epoch) return;
      if (error instanceof ExecutorRequestError && op.kind === "drop") {
        // The engine has already forgotten the adapter; the executor keeping a copy wastes
        // host memory but breaks nothing.
        this.#log.warn({ err: error, adapterId: op.adapterId }, "adapter drop refused");
      } else if (error instanceof ExecutorRequestError) {
        this.#log.warn({ err: error, adapterId: op.adapterId }, "adapter refused");
        // Clients see this message: name the adapter, not where this host keeps its files.
        const message =
          op.kind === "stage" ? error.message.replaceAll(op.path, op.name) : error.message;
        this.#deliver(this.#engine.adapterFailed(op.adapterId, message), AdapterLoadError);
        this.#poke();
      } else {
        this.#executorLost(error);
      }
    };
    const settled = (after: () => void) => () => {
      if (epoch !== this.#epoch) return;
      after();
      this.#poke();
    };
    switch (op.kind) {
      case "stage":
        this.#executor.stageAdapter(op.adapterId, op.path).then((staged) => {
          if (epoch !== this.#epoch) return;
          timed("stage");
          this.#deliver(this.#engine.adapterStaged(staged), AdapterLoadError);
          this.#poke();
        }, failed);
        return;
      case "load":
        this.#executor.loadAdapter(op.adapterId, op.pages).then(
          settled(() => {
            timed("load");
            this.#engine.adapterLoaded(op.adapterId);
          }),
          failed,
        );
        return;
      case "drop":
        this.#executor.dropAdapter(op.adapterId, op.tier).then(
          settled(() => {}),
          failed,
        );
        return;
    }
  }

  /** Brings the executor back once for all the calls that saw it die. */
  #executorLost(error: unknown): void {
    if (this.#recovering !== null) return;
    const unavailable = error instanceof ExecutorUnavailable;
    this.#log.error({ err: error }, unavailable ? "executor lost" : "executor call failed");
    this.#epoch++;
    this.#metrics.executorRestarted();
    this.#recovering = this.#recover().finally(() => {
      this.#recovering = null;
      this.#poke();
    });
  }

  async #recover(): Promise<void> {
    for (let attempt = 1; attempt <= RESTART_ATTEMPTS; attempt++) {
      try {
        const model: ModelInfo = await this.#restart();
        // Requests the new pool cannot hold any more come back finished with an error.
        this.#deliver(this.#engine.executorRestarted(model), BackendUnavailableError);
        this.#log.info({ attempt }, "executor restarted; unfinished requests re-queued");
        return;
      } catch (error) {
        this.#log.error({ err: error, attempt }, "executor restart failed");
      }
    }
    this.#failAll(
      new BackendUnavailableError("the executor crashed and could not be restarted; retry later"),
    );
  }

  #failAll(error: Error): void {
    for (const [id, stream] of this.#streams) {
      this.#engine.abort(id, "abort");
      stream.fail(error);
      this.#metrics.requestFinished(id, "error");
    }
    this.#streams.clear();
  }

  #cancel(id: string): void {
    if (!this.#streams.delete(id)) return;
    this.#engine.abort(id, "abort");
    this.#metrics.requestFinished(id, "abort");
    this.#poke();
  }

  #deliver(outputs: RequestOutput[], errorKind: new (message: string) => Error): void {
    const now = Date.now();
    for (const output of outputs) {
      const stream = this.#streams.get(output.id);
      if (!stream) continue;
      this.#metrics.tokensOut(output.id, output.newTokenIds.length, now);
      if (output.finishReason === "error") {
        stream.fail(new errorKind(output.error ?? "generation failed"));
      } else if (stream.push(output)) {
        // A stop string ended it: the engine still thinks it runs.
        this.#engine.abort(output.id, "stop");
      }
      if (stream.finished) {
        this.#streams.delete(output.id);
        this.#metrics.requestFinished(output.id, output.finishReason ?? "stop");
      }
    }
  }
}
