// The async loop that drives the pure engine: schedule -> send adapter ops and the step
// plan to the executor (up to the engine's maxInFlightSteps steps in flight, so step N+1
// is planned while N runs) -> update the engine with each outcome -> deliver outputs to
// the per-request streams. Around it, one module per decision: admission.ts (may a
// request enter), executor-calls.ts (send, update), recovery.ts (the executor lost),
// drain.ts (SIGTERM), request-streams.ts (deliver).
import type { Logger } from "pino";
import type { Engine, SamplingParams } from "../engine/index.ts";
import type { GrammarSpec } from "../protocol/messages.ts";
import type { ModelTokenizer } from "../tokenizer/tokenizer.ts";
import type { AdapterRegistry } from "./adapter-registry.ts";
import type { Admission, Phase, Seats } from "./admission.ts";
import { Drain } from "./drain.ts";
import { BackendUnavailableError, ExecutorFailedError } from "./errors.ts";
import { ExecutorCalls } from "./executor-calls.ts";
import type { ExecutorLink, ExecutorSupervisor, RemoteAdapter } from "./executor-link.ts";
import { GenerationStream } from "./generation-stream.ts";
import { GrammarRegistry } from "./grammar-registry.ts";
import type { ServingMetrics } from "./metrics.ts";
import { Recovery } from "./recovery.ts";
import { RequestStreams } from "./request-streams.ts";

export interface GenerateRequest {
  /** the fair-share unit; "default" for direct callers */
  tenant: string;
  /** the prefix cache's isolation unit: the gateway's cache_salt, else the tenant */
  cacheSalt: string;
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
  /** what every sample must follow (structured outputs, tool calls); null = free text */
  grammar: GrammarSpec | null;
  /** special tokens stay in the text (a tool-call format opened by one) */
  keepSpecialTokens: boolean;
  /** absolute ms, null = none */
  deadlineMs: number | null;
}

/** A loop with requests pending sleeps at most this long, so deadlines pass without traffic. */
const IDLE_TICK_MS = 50;

export class ServingLoop {
  readonly admission: Admission;
  readonly #engine: Engine;
  readonly #supervisor: ExecutorSupervisor;
  readonly #adapters: AdapterRegistry;
  readonly #tokenizer: ModelTokenizer;
  readonly #metrics: ServingMetrics;
  readonly #streams: RequestStreams;
  readonly #recovery: Recovery;
  readonly #calls: ExecutorCalls;
  readonly #grammars: GrammarRegistry;
  readonly #drain = new Drain();
  #nextId = 0;
  #wake: (() => void) | null = null;
  #running = false;
  #stopped: Promise<void> | null = null;

  constructor(deps: {
    engine: Engine;
    admission: Admission;
    executor: ExecutorLink;
    supervisor: ExecutorSupervisor;
    adapters: AdapterRegistry;
    tokenizer: ModelTokenizer;
    metrics: ServingMetrics;
    logger: Logger;
  }) {
    this.admission = deps.admission;
    this.#engine = deps.engine;
    this.#supervisor = deps.supervisor;
    this.#adapters = deps.adapters;
    this.#tokenizer = deps.tokenizer;
    this.#metrics = deps.metrics;
    this.#streams = new RequestStreams(deps.engine, deps.metrics);
    this.#grammars = new GrammarRegistry(deps.executor, deps.metrics);
    const poke = () => this.#poke();
    this.#recovery = new Recovery({
      ...deps,
      streams: this.#streams,
      grammars: this.#grammars,
      onEnd: poke,
    });
    this.#calls = new ExecutorCalls({
      ...deps,
      streams: this.#streams,
      recovery: this.#recovery,
      onOutcome: poke,
    });
  }

  /** unfinished requests (running + waiting): /health's `load` */
  get unfinished(): number {
    return this.#streams.size;
  }

  get phase(): Phase {
    if (this.#drain.draining) return "draining";
    const state = this.#supervisor.state;
    if (state === "failed" || state === "closed") return "failed";
    if (this.#recovery.recovering || state !== "ready") return "restarting";
    return "serving";
  }

  /** Graceful shutdown, first half (drain.ts); call stop() after it. */
  drain(timeoutMs: number): Promise<void> {
    return this.#drain.start(() => this.#streams.size, timeoutMs);
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
    this.#streams.failAll(new BackendUnavailableError("the server is shutting down"));
  }

  /** Seats for `count` requests of one client request (Admission.reserve). */
  reserve(count: number, param: "prompt" | "n"): Seats {
    return this.admission.reserve(this.#streams.size, count, param);
  }

  /** grammars held by unfinished requests (tests: none is left behind) */
  get heldGrammars(): number {
    return this.#grammars.size;
  }

  /**
   * Admits a request on one of `seats` and returns its stream. Throws what admission
   * refuses with, UnknownModelError, AdapterLoadError, AdapterStoreUnavailableError,
   * the executor's grammar refusal (a 400) or the engine's InvalidRequestError before
   * anything is queued. A grammar is compiled (or found compiled) first: the request
   * waits for it, the running batch does not.
   */
  async generate(request: GenerateRequest, seats: Seats): Promise<GenerationStream> {
    const { promptIds } = request;
    const maxTokens = this.admission.admit(
      this.phase,
      { promptLength: promptIds.length, maxTokens: request.maxTokens },
      seats,
    );
    const adapter = request.remoteAdapter
      ? await this.#adapters.resolveRemote(request.remoteAdapter)
      : request.adapterName === null
        ? null
        : await this.#adapters.resolve(request.adapterName);
    const grammarId =
      request.grammar === null ? null : await this.#grammars.acquire(request.grammar);
    const release = () => {
      if (grammarId !== null) this.#grammars.release(grammarId);
    };
    const id = `req-${++this.#nextId}`;
    const stream = new GenerationStream(
      id,
      this.#tokenizer,
      promptIds,
      { stops: request.stop, keepSpecialTokens: request.keepSpecialTokens },
      () => {
        if (this.#streams.cancel(id)) this.#poke();
      },
    );
    const now = Date.now();
    try {
      this.#engine.addRequest({
        id,
        tenant: request.tenant,
        cacheSalt: request.cacheSalt,
        adapter,
        promptTokenIds: promptIds,
        sampling: request.sampling,
        maxTokens,
        stopTokenIds: request.stopTokenIds,
        ignoreEos: request.ignoreEos,
        grammarId,
        deadlineMs: request.deadlineMs,
        arrivalMs: now,
      });
    } catch (error) {
      release();
      throw error;
    }
    seats.take();
    this.#streams.add(stream, now, release);
    this.#poke();
    return stream;
  }

  async #run(): Promise<void> {
    while (this.#running) {
      if (!this.#recovery.recovering && this.#engine.canSchedule()) {
        const { plan, adapterOps, finished } = this.#engine.schedule(Date.now());
        for (const op of adapterOps) this.#calls.sendAdapterOp(op);
        if (plan) this.#calls.sendStep(plan);
        this.#streams.deliver(finished, ExecutorFailedError);
        this.#metrics.observeEngine(this.#engine.stats());
        if (plan) continue;
      } else if (!this.#recovery.recovering) {
        // Steps in flight at their limit: an adapter staged (or a request queued) meanwhile
        // gets its load (or stage) now, not after the next step's result.
        for (const op of this.#engine.prefetch()) this.#calls.sendAdapterOp(op);
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
}
