import type { ModelInfo, StagedAdapter, StepPlan, StepResult } from "../protocol/messages.ts";
import { AdapterManager, type AdapterOp, type AdapterStats, type HostTier } from "./adapters.ts";
import { PAGES_PER_TOKEN, PageAllocator, type PageStats } from "./allocator.ts";
import { type EngineConfig, validateEngineConfig, validateModelInfo } from "./config.ts";
import { DuplicateRequestError, EngineConfigError, InvalidRequestError } from "./errors.ts";
import { PoolEviction } from "./eviction.ts";
import { FairShare } from "./fair-share.ts";
import type { RequestOutput } from "./output.ts";
import {
  type BlockHasher,
  BlockHashes,
  PrefixCache,
  type PrefixCacheStats,
} from "./prefix-cache.ts";
import { Probation } from "./probation.ts";
import { type EngineRequest, validateRequest } from "./request.ts";
import { Scheduler } from "./scheduler.ts";
import { Sequence } from "./sequence.ts";
import { UseClock } from "./use-clock.ts";

function hostTierOf(model: ModelInfo): HostTier {
  return { capacityBytes: model.hostCacheBytes, maxAdapterBytes: model.maxAdapterHostBytes };
}

/** What one `schedule` call asks of the executor client. */
export interface ScheduledStep {
  /** send after adapterOps; null = nothing to run now */
  plan: StepPlan | null;
  /** send in order; report outcomes with adapterStaged / adapterLoaded / adapterFailed */
  adapterOps: AdapterOp[];
  /** requests the engine finished on its own (deadline) */
  finished: RequestOutput[];
}

export interface TenantStats {
  /** VTC counter: weighted tokens served */
  counter: number;
  promptTokens: number;
  outputTokens: number;
  waiting: number;
  running: number;
}

export interface EngineStats {
  /** queued, suspects waiting for their probation included */
  waiting: number;
  running: number;
  /** suspects of an executor failure not yet past it (Probation): on probation or in line */
  suspects: number;
  inFlightSteps: number;
  pages: PageStats;
  adapters: AdapterStats & { hitRate: number };
  prefixCache: PrefixCacheStats;
  preemptions: number;
  deadlineAborts: number;
  tenants: Record<string, TenantStats>;
}

/** What the engine is given rather than doing itself (it does no I/O and imports no node: module). */
export interface EngineDeps {
  /** the prefix cache's block hash: SHA-256 in the server (prefix-cache.ts) */
  hashBlock: BlockHasher;
}

/**
 * The engine: every decision of the backend, no I/O. The server's loop feeds it requests and
 * executor outcomes and carries its plans out (README.md shows the loop).
 *
 * Example:
 *   const engine = new Engine(defaultEngineConfig(), modelInfo, { hashBlock: sha256Blocks });
 *   engine.addRequest(request);
 *   const { plan, adapterOps } = engine.schedule(Date.now());
 *   // ... executor runs plan ...
 *   const outputs = engine.update(stepResult, Date.now());
 */
export class Engine {
  readonly config: EngineConfig;
  readonly #pages: PageAllocator;
  readonly #adapters: AdapterManager;
  readonly #fairShare: FairShare;
  readonly #cache: PrefixCache;
  readonly #scheduler: Scheduler;
  readonly #probation = new Probation();
  readonly #hashBlock: BlockHasher;
  #model: ModelInfo;
  readonly #requests = new Map<string, Sequence>();
  /** unfinished requests per tenant: a tenant is active for VTC while it has any */
  readonly #activeTenants = new Map<string, number>();

  constructor(config: EngineConfig, model: ModelInfo, deps: EngineDeps) {
    this.config = validateEngineConfig(config);
    this.#model = validateModelInfo(model);
    if (config.poolSharing !== "unified" && model.numPages < 2) {
      throw new EngineConfigError(`a split pool needs at least 2 pages, got ${model.numPages}`);
    }
    this.#hashBlock = deps.hashBlock;
    this.#pages = new PageAllocator(model.numPages, config.poolSharing);
    const clock = new UseClock();
    this.#cache = new PrefixCache(
      this.#pages,
      clock,
      config.prefixBlockSize,
      config.enablePrefixCaching,
    );
    const eviction = new PoolEviction(this.#pages, this.#cache, () => this.#adapters, clock);
    this.#adapters = new AdapterManager(
      { maxLoras: config.maxLoras, maxCpuLoras: config.maxCpuLoras },
      hostTierOf(model),
      this.#pages,
      { clock, pool: eviction },
    );
    this.#fairShare = new FairShare(config.vtcPromptWeight, config.vtcOutputWeight);
    this.#scheduler = new Scheduler(
      config,
      model,
      {
        pages: this.#pages,
        adapters: this.#adapters,
        fairShare: this.#fairShare,
        cache: this.#cache,
        eviction,
      },
      (seq) => this.#forget(seq),
    );
  }

  addRequest(req: EngineRequest): void {
    validateRequest(req, this.#model);
    const kvPages = this.#kvPagesAtMost(req);
    if (kvPages > this.#pages.kvCapacity) {
      // It could never run to its end even alone: it would preempt itself forever.
      throw new InvalidRequestError(
        `request ${JSON.stringify(req.id)}: prompt + maxTokens need ${kvPages} KV pages; the pool has ${this.#pages.kvCapacity} for KV`,
      );
    }
    if (this.#requests.has(req.id)) {
      throw new DuplicateRequestError(`request ${JSON.stringify(req.id)} is still unfinished`);
    }
    // An adapter staged already has a known size (adapterStaged checks those that wait for it).
    const adapterPages = req.adapter === null ? null : this.#adapters.stagedPages(req.adapter.name);
    if (adapterPages !== null && !this.#pages.fitsTogether(adapterPages, kvPages)) {
      throw new InvalidRequestError(
        `request ${JSON.stringify(req.id)}: adapter ${req.adapter?.name} (${adapterPages} pages) and the request's ${kvPages} KV pages exceed the pool's ${this.#pages.numPages}`,
      );
    }
    // The chain's root: only requests of one adapter (by its content) and one cache salt
    // (tenant) ever share KV; the base model is the hasher's (the server seeds it).
    const root = JSON.stringify([
      "lorafleet-prefix-v1",
      req.adapter?.name ?? null,
      req.adapter?.sha256 ?? null,
      req.cacheSalt,
    ]);
    const seq = new Sequence(
      req,
      new BlockHashes(root, this.#hashBlock, this.config.prefixBlockSize),
    );
    const active = this.#activeTenants.get(req.tenant) ?? 0;
    if (active === 0) this.#fairShare.activate(req.tenant, this.#activeTenants.keys());
    this.#activeTenants.set(req.tenant, active + 1);
    this.#requests.set(req.id, seq);
    if (req.adapter !== null) this.#adapters.ref(req.adapter);
    this.#scheduler.add(seq);
  }

  /** Ends a request now (client gone: "abort"; the server matched a stop string: "stop"). */
  abort(id: string, reason: "abort" | "stop"): RequestOutput | null {
    const seq = this.#requests.get(id);
    return seq === undefined ? null : this.#scheduler.finish(seq, reason);
  }

  /** Ends a request now with "error" (the supervisor gave up on it); null if unknown. */
  fail(id: string, message: string): RequestOutput | null {
    const seq = this.#requests.get(id);
    return seq === undefined ? null : this.#scheduler.finish(seq, "error", message);
  }

  /** The ids of the unfinished requests whose current seq is one of `seqIds` (a step's). */
  requestIdsOf(seqIds: Uint32Array): string[] {
    const wanted = new Set(seqIds);
    return this.#scheduler.running
      .filter((seq) => seq.seqId !== null && wanted.has(seq.seqId))
      .map((seq) => seq.req.id);
  }

  /** The suspect on probation now (Probation), or null. */
  get probationer(): string | null {
    return this.#probation.current?.req.id ?? null;
  }

  /**
   * The most prompt + output tokens one request may have for its KV to fit the pool on its
   * own (addRequest refuses more): the engine's one bound on a request's length. The
   * context limit in front of it (serving/admission.ts) stays within it.
   */
  get kvTokenCapacity(): number {
    return Math.floor(this.#pages.kvCapacity / PAGES_PER_TOKEN);
  }

  canSchedule(): boolean {
    return this.#scheduler.canSchedule();
  }

  hasUnfinishedRequests(): boolean {
    return this.#requests.size > 0;
  }

  schedule(nowMs: number): ScheduledStep {
    const { plan, finished } = this.#scheduler.schedule(nowMs, this.#requests.values());
    return { plan, adapterOps: this.#adapters.takeOps(), finished };
  }

  /**
   * Stage and load ops for queued requests' adapters, without planning a step: call it when
   * an adapter outcome or a request comes while `canSchedule()` is false, so that an
   * adapter's load follows its stage at once rather than after the next step's result.
   */
  prefetch(): AdapterOp[] {
    this.#scheduler.prefetch();
    return this.#adapters.takeOps();
  }

  update(result: StepResult, nowMs: number): RequestOutput[] {
    const outputs = this.#scheduler.update(result, nowMs, this.#requests.values());
    const suspect = this.#probation.current;
    if (suspect !== null && outputs.some((o) => o.id === suspect.req.id && o.newTokenIds.length)) {
      this.#probation.passed(suspect);
      this.#admitNextSuspect();
    }
    return outputs;
  }

  /**
   * The executor staged an adapter. An adapter that can never fit the pool fails its requests,
   * and so does each request that could not run to its end beside it in an empty pool.
   */
  adapterStaged(staged: StagedAdapter): RequestOutput[] {
    const problem = this.#adapters.onStaged(staged);
    if (problem !== null) return this.#failAdapterRequests(staged.adapterId, problem);
    const name = this.#adapters.nameOf(staged.adapterId);
    const tooBig = [...this.#requests.values()].filter(
      (s) =>
        s.req.adapter?.name === name &&
        !this.#pages.fitsTogether(staged.numPages, this.#kvPagesAtMost(s.req)),
    );
    return tooBig.map((seq) =>
      this.#scheduler.finish(
        seq,
        "error",
        `adapter ${name} (${staged.numPages} pages) and the request's ${this.#kvPagesAtMost(seq.req)} KV pages exceed the pool's ${this.#pages.numPages}`,
      ),
    );
  }

  adapterLoaded(adapterId: number): void {
    this.#adapters.onLoaded(adapterId);
  }

  /** A stage or load failed: the requests that name the adapter finish with "error". */
  adapterFailed(adapterId: number, message: string): RequestOutput[] {
    const name = this.#adapters.onFailed(adapterId);
    return this.#failAdapterRequests(adapterId, `adapter ${name}: ${message}`);
  }

  unloadAdapter(name: string): void {
    this.#adapters.unload(name);
  }

  /**
   * The executor restarted: re-queue everything, forget placements; the unfinished requests
   * among `suspects` (an executor failure involved them) come back one at a time, on
   * probation (probation.ts). Returns the requests that no longer fit a smaller pool,
   * finished with "error" (none when the pool size is the same).
   */
  executorRestarted(model: ModelInfo, suspects: readonly string[] = []): RequestOutput[] {
    this.#model = validateModelInfo(model);
    this.#scheduler.reset();
    this.#cache.reset();
    this.#pages.reset(model.numPages);
    this.#adapters.reset(hostTierOf(model));
    const tooBig = [...this.#requests.values()].filter(
      (s) => this.#kvPagesAtMost(s.req) > this.#pages.kvCapacity,
    );
    const failed = tooBig.map((seq) =>
      this.#scheduler.finish(
        seq,
        "error",
        `the restarted executor's pool has ${this.#pages.kvCapacity} pages for KV; this request needs ${this.#kvPagesAtMost(seq.req)}`,
      ),
    );
    for (const id of suspects) {
      const seq = this.#requests.get(id);
      if (seq === undefined || seq === this.#probation.current) continue;
      this.#scheduler.waiting.remove(seq);
      this.#probation.hold(seq);
    }
    this.#admitNextSuspect();
    return failed;
  }

  stats(): EngineStats {
    const adapters = this.#adapters.stats();
    const lookups = adapters.hits + adapters.misses;
    const tenants: Record<string, TenantStats> = {};
    const running = new Map<string, number>();
    for (const seq of this.#scheduler.running) {
      running.set(seq.req.tenant, (running.get(seq.req.tenant) ?? 0) + 1);
    }
    const tenantNames = new Set([
      ...this.#scheduler.counters.servedByTenant.keys(),
      ...this.#activeTenants.keys(),
    ]);
    for (const tenant of tenantNames) {
      tenants[tenant] = {
        counter: this.#fairShare.counter(tenant),
        promptTokens: 0,
        outputTokens: 0,
        ...this.#scheduler.counters.servedByTenant.get(tenant),
        waiting: this.#scheduler.waiting.countOf(tenant),
        running: running.get(tenant) ?? 0,
      };
    }
    for (const seq of this.#probation.held) {
      const tenant = tenants[seq.req.tenant];
      if (tenant !== undefined) tenant.waiting++;
    }
    const suspects = this.#probation.held.length + (this.#probation.current === null ? 0 : 1);
    return {
      waiting: this.#scheduler.waiting.size + this.#probation.held.length,
      running: this.#scheduler.running.length,
      suspects,
      inFlightSteps: this.#scheduler.numInFlight,
      pages: this.#pages.stats(),
      adapters: { ...adapters, hitRate: lookups === 0 ? 0 : adapters.hits / lookups },
      prefixCache: this.#cache.stats(),
      preemptions: this.#scheduler.counters.preemptions,
      deadlineAborts: this.#scheduler.counters.deadlineAborts,
      tenants,
    };
  }

  /**
   * Checks the page allocator's and the prefix cache's invariants (every page in one state,
   * reference counts = page tables, block holders = running seqs); throws naming the first
   * broken one. For tests and debugging.
   */
  checkInvariants(): void {
    this.#pages.checkInvariants();
    this.#cache.checkInvariants(this.#scheduler.running.map((seq) => seq.blocks));
  }

  #kvPagesAtMost(req: EngineRequest): number {
    return PAGES_PER_TOKEN * (req.promptTokenIds.length + req.maxTokens);
  }

  #failAdapterRequests(adapterId: number, message: string): RequestOutput[] {
    const name = this.#adapters.nameOf(adapterId);
    const victims = [...this.#requests.values()].filter((s) => s.req.adapter?.name === name);
    return victims.map((seq) => this.#scheduler.finish(seq, "error", message));
  }

  /** The next suspect's turn, once the one on probation has passed or left. */
  #admitNextSuspect(): void {
    const next = this.#probation.next();
    if (next !== null) this.#scheduler.waiting.pushFront(next);
  }

  /** Called by the scheduler once a request has released its pages and pin. */
  #forget(seq: Sequence): void {
    this.#requests.delete(seq.req.id);
    const wasOnProbation = seq === this.#probation.current;
    this.#probation.forget(seq);
    if (wasOnProbation) this.#admitNextSuspect();
    if (seq.req.adapter !== null) this.#adapters.unref(seq.req.adapter.name);
    const active = (this.#activeTenants.get(seq.req.tenant) ?? 1) - 1;
    if (active === 0) {
      this.#activeTenants.delete(seq.req.tenant);
      this.#fairShare.deactivate(seq.req.tenant);
    } else {
      this.#activeTenants.set(seq.req.tenant, active);
    }
  }
}
