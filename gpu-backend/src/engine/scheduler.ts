import { type ModelInfo, StepFlag, type StepPlan, type StepResult } from "../protocol/messages.ts";
import type { AdapterManager } from "./adapters.ts";
import { PAGES_PER_TOKEN, type PageAllocator } from "./allocator.ts";
import type { EngineConfig } from "./config.ts";
import { StepResultError } from "./errors.ts";
import type { PoolEviction } from "./eviction.ts";
import type { FairShare } from "./fair-share.ts";
import type { FinishReason, RequestOutput, TokenLogprobs } from "./output.ts";
import { buildStepPlan, inRowOrder, type PlannedSeq } from "./plan-builder.ts";
import type { KvBlock, PrefixCache } from "./prefix-cache.ts";
import { WaitingQueue } from "./queue.ts";
import type { Sequence } from "./sequence.ts";

export const GRAMMAR_FAILED =
  "the output grammar failed while generating (it went past llguidance's per-token limits); simplify the schema";

/** A step sent to the executor and not answered yet. */
interface InFlightStep {
  stepId: number;
  /** the seqs asked to sample, in step order: the rows the result must have */
  sampled: number[];
}

export interface SchedulerCounters {
  preemptions: number;
  deadlineAborts: number;
  /** per tenant: prompt tokens admitted (first admission) and output tokens served */
  servedByTenant: Map<string, { promptTokens: number; outputTokens: number }>;
}

/**
 * Iteration-level continuous batching (Orca; vLLM v1's scheduler shape): each `schedule`
 * gives running seqs their next tokens first (decode, or the next prefill chunk), then
 * admits queued requests by fair share while the token budget, the seq limit, the pool and
 * their adapters allow. `update` applies a step's sampled tokens.
 *
 * Up to maxInFlightSteps steps may be unanswered: a seq whose sample is still in flight is
 * scheduled with StepFlag.useLastSampled, and its KV pages are allocated at planning time.
 *
 * Prefix caching: an admission takes the longest cached prefix of its tokens and computes
 * from there. A block becomes findable as soon as a step that computes its last token is
 * planned (all its token ids known), so a seq of the same step or of any later one may
 * take it: the executor runs steps in order and writes each layer's K/V of a whole step
 * before that layer's attention (PROTOCOL.md "Shared pages"). `n > 1` choices and
 * identical prompts admitted together therefore share the prompt's pages. Finished and
 * preempted seqs leave their full blocks cached.
 */
export class Scheduler {
  readonly #config: EngineConfig;
  readonly #eosTokenIds: number[];
  readonly #vocabSize: number;
  readonly #pages: PageAllocator;
  readonly #adapters: AdapterManager;
  readonly #fairShare: FairShare;
  readonly #cache: PrefixCache;
  readonly #eviction: PoolEviction;
  readonly waiting = new WaitingQueue();
  /** admitted requests, oldest admission first: preemption takes from the end */
  readonly running: Sequence[] = [];
  readonly #bySeqId = new Map<number, Sequence>();
  readonly #inFlight: InFlightStep[] = [];
  /** seq ids whose executor state the next plan drops */
  #toFree: number[] = [];
  /** the most wanted waiting adapter needs pages that admissions would take (AdapterManager.prefetch) */
  #holdAdmission = false;
  /** the longest prompt of any request so far: fair-share.ts's bound has it (`#admit`) */
  #longestPrompt = 0;
  #nextStepId = 0;
  #nextSeqId = 0;
  readonly counters: SchedulerCounters = {
    preemptions: 0,
    deadlineAborts: 0,
    servedByTenant: new Map(),
  };
  /** called for a request leaving the engine, after its resources are released */
  readonly #onFinished: (seq: Sequence) => void;

  constructor(
    config: EngineConfig,
    model: ModelInfo,
    parts: {
      pages: PageAllocator;
      adapters: AdapterManager;
      fairShare: FairShare;
      cache: PrefixCache;
      eviction: PoolEviction;
    },
    onFinished: (seq: Sequence) => void,
  ) {
    this.#config = config;
    this.#eosTokenIds = [...model.eosTokenIds];
    this.#vocabSize = model.vocabSize;
    this.#pages = parts.pages;
    this.#adapters = parts.adapters;
    this.#fairShare = parts.fairShare;
    this.#cache = parts.cache;
    this.#eviction = parts.eviction;
    this.#onFinished = onFinished;
  }

  get numInFlight(): number {
    return this.#inFlight.length;
  }

  canSchedule(): boolean {
    return this.#inFlight.length < this.#config.maxInFlightSteps;
  }

  /**
   * Plans the next step (null when nothing can run or too many steps are in flight) and
   * finishes requests past their deadline.
   */
  schedule(
    nowMs: number,
    unfinished: Iterable<Sequence>,
  ): {
    plan: StepPlan | null;
    finished: RequestOutput[];
  } {
    const finished = this.expire(nowMs, unfinished);
    const wanted = this.#wanted();
    let plan: StepPlan | null = null;
    if (this.canSchedule()) {
      const planned: PlannedSeq[] = [];
      const budget = { tokens: this.#config.maxNumBatchedTokens };
      const short = this.#scheduleRunning(planned, budget);
      // As vLLM: a step short of pages admits nothing, or it would preempt again.
      if (!short && !this.#holdAdmission) this.#admit(planned, budget, wanted);
      this.#adapters.admissionPassed();
      if (planned.length > 0) plan = this.#send(planned);
    }
    this.#prefetch(wanted);
    return { plan, finished };
  }

  /**
   * Stages and loads the adapters queued requests will need, soonest first, without planning
   * a step: for the moments between steps (an adapter staged or a request queued while the
   * steps in flight are at their limit), so a load does not wait for the next step's result.
   */
  prefetch(): void {
    this.#prefetch(this.#wanted());
  }

  /** The adapters of the first prefetchWindow queued requests, soonest first (their ranks). */
  #wanted(): string[] {
    const window = this.waiting.fairOrder(this.#fairShare, this.#config.prefetchWindow);
    const wanted = [...new Set(window.flatMap((s) => (s.req.adapter ? [s.req.adapter.name] : [])))];
    this.#adapters.setWanted(wanted);
    return wanted;
  }

  /**
   * The adapters wanted by as many requests as seats are free leave the running seqs' next
   * step's KV alone (loaded now, they serve a request admitted now). Those further back
   * leave all the KV those seqs may still take: their requests cannot start before one of
   * the running ends, and pages the running will need would only be taken back from them
   * (evicted, loaded again later).
   */
  #prefetch(wanted: readonly string[]): void {
    const seats = this.#config.maxNumSeqs - this.running.length;
    const nextStep = this.#nextStepKvPages();
    const remaining = this.#remainingKvPages();
    this.#holdAdmission = this.#adapters.prefetch(
      wanted,
      (rank) => (rank < seats ? nextStep : remaining),
      seats > 0,
    );
  }

  /**
   * KV pages the running seqs may still take, at most: to their maxTokens, less the last
   * sampled token, which is never fed back.
   */
  #remainingKvPages(): number {
    let tokens = 0;
    for (const seq of this.running) {
      const most = seq.numPrompt + seq.req.maxTokens - 1;
      tokens += Math.max(0, most - seq.numComputed);
    }
    return PAGES_PER_TOKEN * tokens;
  }

  /** Applies the oldest in-flight step's result; returns one output per request it touched. */
  update(result: StepResult, nowMs: number, unfinished: Iterable<Sequence>): RequestOutput[] {
    const step = this.#completeOldest(result.stepId);
    if (
      result.seqIds.length !== step.sampled.length ||
      step.sampled.some((seqId, i) => result.seqIds[i] !== seqId)
    ) {
      throw new StepResultError(
        `step ${step.stepId} result rows [${[...result.seqIds]}] are not its sampled seqs [${step.sampled}]`,
      );
    }
    const outputs: RequestOutput[] = [];
    let topOffset = 0;
    for (const [i, seqId] of step.sampled.entries()) {
      const topCount = result.topCounts[i] ?? 0;
      const rowTop = topOffset;
      topOffset += topCount;
      const seq = this.#bySeqId.get(seqId);
      // Finished or preempted since this step was sent: the token is not part of its output.
      if (seq === undefined) continue;
      const logprobs: TokenLogprobs | null =
        seq.req.sampling.logprobs === null
          ? null
          : {
              logprob: result.logprobs[i] ?? Number.NaN,
              top: Array.from({ length: topCount }, (_, k) => ({
                tokenId: result.topIds[rowTop + k] ?? -1,
                logprob: result.topLogprobs[rowTop + k] ?? Number.NaN,
              })),
            };
      const token = result.tokens[i] as number;
      if (!Number.isInteger(token) || token < 0 || token >= this.#vocabSize) {
        throw new StepResultError(
          `step ${step.stepId} seq ${seqId}: token ${token} is not in the vocabulary`,
        );
      }
      if (result.grammarErrors[i] === 1) {
        // The executor's matcher failed (llguidance's per-step limits): its token is an
        // EOS the grammar did not choose, and the output cannot be trusted to parse.
        outputs.push(this.finish(seq, "error", GRAMMAR_FAILED));
        continue;
      }
      const reason = seq.appendSample(token, logprobs, this.#eosTokenIds);
      this.#fairShare.charge(seq.req.tenant, 0, 1);
      this.#served(seq.req.tenant).outputTokens++;
      outputs.push(reason === null ? seq.takeOutput(null) : this.finish(seq, reason));
    }
    outputs.push(...this.expire(nowMs, unfinished));
    return outputs;
  }

  add(seq: Sequence): void {
    this.#longestPrompt = Math.max(this.#longestPrompt, seq.numPrompt);
    this.waiting.push(seq);
  }

  /** Ends a request wherever it is and releases what it holds; returns its final output. */
  finish(seq: Sequence, reason: FinishReason, error: string | null = null): RequestOutput {
    return this.#end(seq, reason, error, true);
  }

  /** finish; `keepBlocks` false: its KV may be garbage (a failed step), none of it is cached. */
  #end(
    seq: Sequence,
    reason: FinishReason,
    error: string | null,
    keepBlocks: boolean,
  ): RequestOutput {
    if (seq.status === "running") this.#release(seq, keepBlocks);
    else this.waiting.remove(seq);
    seq.status = "finished";
    this.#onFinished(seq);
    return seq.takeOutput(reason, error);
  }

  /** Finishes every request whose deadline is at or before `nowMs`. */
  expire(nowMs: number, unfinished: Iterable<Sequence>): RequestOutput[] {
    const late = [...unfinished].filter(
      (s) => s.req.deadlineMs !== null && s.req.deadlineMs <= nowMs,
    );
    this.counters.deadlineAborts += late.length;
    return late.map((seq) => this.finish(seq, "deadline"));
  }

  /** The executor restarted: nothing is in flight, every running request is queued again. */
  reset(): void {
    for (const seq of [...this.running].reverse()) {
      this.#bySeqId.delete(seq.seqId as number);
      if (seq.req.adapter) this.#adapters.unpin(seq.req.adapter.name);
      seq.resetForRecompute();
      this.waiting.pushFront(seq);
    }
    this.running.length = 0;
    this.#inFlight.length = 0;
    this.#toFree = [];
  }

  #completeOldest(stepId: number): InFlightStep {
    const step = this.#inFlight[0];
    if (step === undefined || step.stepId !== stepId) {
      throw new StepResultError(
        `result for step ${stepId}, but the oldest step in flight is ${step?.stepId ?? "none"}`,
      );
    }
    this.#inFlight.shift();
    this.#pages.settle(stepId);
    this.#adapters.stepCompleted(stepId);
    this.#cache.stepCompleted(stepId);
    return step;
  }

  #served(tenant: string): { promptTokens: number; outputTokens: number } {
    let served = this.counters.servedByTenant.get(tenant);
    if (served === undefined) {
      served = { promptTokens: 0, outputTokens: 0 };
      this.counters.servedByTenant.set(tenant, served);
    }
    return served;
  }

  /**
   * Running seqs first, oldest admission first. Returns whether pages ran short (a seq was
   * preempted or is waiting for pages).
   */
  #scheduleRunning(planned: PlannedSeq[], budget: { tokens: number }): boolean {
    let short = false;
    for (const seq of [...this.running]) {
      if (budget.tokens === 0) break;
      if (seq.status !== "running") continue; // preempted earlier in this pass
      const n = Math.min(this.#tokensToCompute(seq), budget.tokens);
      if (n === 0) continue;
      while (!this.#pages.canAllocateKv(n)) {
        // The pool's eviction policy: cached KV, or (S-LoRA) an idle adapter, whose pages
        // cannot become KV in a split pool. Cached KV is room, not a shortage.
        const evicted = this.#eviction.evictForKv(0);
        if (evicted === "kv") continue;
        short = true;
        if (evicted === "adapter") continue;
        // Adapters loading now are idle once loaded: wait for them rather than recompute.
        const missing = n * PAGES_PER_TOKEN - this.#pages.kvRoom();
        if (this.#pages.unified && missing <= this.#adapters.pagesLoading()) break;
        // Then the newest admission gives its pages up and is recomputed later.
        const victim = this.running.at(-1) as Sequence;
        this.#preempt(victim);
        if (victim === seq) break;
      }
      if (seq.status !== "running" || !this.#pages.canAllocateKv(n)) continue;
      planned.push(this.#plan(seq, n));
      budget.tokens -= n;
    }
    return short;
  }

  /** KV pages the running seqs would take in their next step: what adapter loads leave alone. */
  #nextStepKvPages(): number {
    let tokens = 0;
    for (const seq of this.running) tokens += this.#tokensToCompute(seq);
    return PAGES_PER_TOKEN * Math.min(tokens, this.#config.maxNumBatchedTokens);
  }

  /**
   * Admits queued requests by fair share (VTC) while seqs, tokens and pages allow: of the
   * tenant with the smallest counter among those with a request that can start now, its
   * oldest such request (base model, or adapter resident and not draining). A request
   * whose adapter is not resident is passed over, wherever it is queued, and never holds
   * back the others: its adapter is prefetched meanwhile (`#prefetch`), and room it has no
   * other way to get comes from draining (AdapterManager.prefetch).
   */
  #admit(planned: PlannedSeq[], budget: { tokens: number }, wanted: readonly string[]): void {
    const nothingStartable = new Set<string>();
    // The smallest counter of a tenant passed over: others go ahead of it by a prompt at most.
    let passedCounter = Number.POSITIVE_INFINITY;
    const promptWeight = this.#fairShare.promptWeight;
    while (this.running.length < this.#config.maxNumSeqs && budget.tokens > 0) {
      const tenant = this.waiting.pickTenant(this.#fairShare, nothingStartable);
      if (tenant === null) return;
      const seq = this.waiting
        .of(tenant)
        .find((s) => s.req.adapter === null || this.#adapters.isStartable(s.req.adapter.name));
      if (seq === undefined) {
        nothingStartable.add(tenant);
        passedCounter = Math.min(passedCounter, this.#fairShare.counter(tenant));
        continue;
      }
      // Past a tenant with a smaller counter (its requests all wait for adapters), only while
      // this one's counter, with this prompt charged, stays within the longest prompt's
      // worth of it: what admitting in counter order allows anyway, so fair-share.ts's bound
      // still holds. Beyond that the waiting tenant goes first, once its adapter is in.
      const charge = seq.charged ? 0 : promptWeight * seq.numPrompt;
      if (
        this.#fairShare.counter(tenant) + charge >
        passedCounter + promptWeight * this.#longestPrompt
      ) {
        return;
      }
      const adapter = seq.req.adapter;
      // How soon queued requests want its adapter (base -1, before every adapter).
      const found = adapter === null ? -1 : wanted.indexOf(adapter.name);
      const rank = adapter !== null && found === -1 ? wanted.length : found;
      const hit = this.#cache.lookup(seq.hashes, seq.tokens);
      const n = Math.min(seq.tokens.length - hit.numTokens, budget.tokens);
      // Pinned and held first, so that making room for the rest of its KV cannot evict its
      // own adapter or cached prefix.
      if (adapter !== null) this.#adapters.pin(adapter.name);
      this.#cache.acquire(hit.blocks);
      while (!this.#pages.canAllocateKv(n)) {
        // Cached KV, and idle adapters that queued requests behind this one want, may go;
        // they load again.
        if (this.#eviction.evictForKv(rank + 1) !== null) continue;
        this.#cache.release(hit.blocks, this.#lastSent());
        if (adapter !== null) this.#adapters.unpin(adapter.name);
        return;
      }
      this.waiting.remove(seq);
      seq.status = "running";
      seq.seqId = this.#nextSeqId++;
      this.#bySeqId.set(seq.seqId, seq);
      this.running.push(seq);
      if (!seq.charged) {
        seq.charged = true;
        seq.numCachedPrompt = Math.min(hit.numTokens, seq.numPrompt);
        this.#fairShare.charge(tenant, seq.numPrompt, 0);
        this.#served(tenant).promptTokens += seq.numPrompt;
      }
      this.#cache.countQuery(seq.tokens.length, hit.numTokens);
      planned.push(this.#plan(seq, n, this.#takePrefix(seq, hit.blocks, hit.numTokens)));
      budget.tokens -= n;
    }
  }

  /** Tokens the seq could compute now: a prefill chunk's worth, one decode token, or 0. */
  #tokensToCompute(seq: Sequence): number {
    if (seq.numKnownUncomputed > 0) return seq.numKnownUncomputed;
    // Decoding with a sample in flight: one more only if the output budget is not spent.
    return seq.outputBudgetSpent ? 0 : 1;
  }

  /**
   * A new admission's cached prefix: the seq holds its blocks and their first `numTokens`
   * tokens' pages start its page table. Returns the prefix for the step plan.
   */
  #takePrefix(
    seq: Sequence,
    blocks: KvBlock[],
    numTokens: number,
  ): { tokenIds: number[]; pages: number[] } {
    const pages = blocks.flatMap((block) => Array.from(block.pages));
    pages.length = numTokens * PAGES_PER_TOKEN;
    this.#pages.shareKv(seq.seqId as number, pages);
    seq.blocks = [...blocks];
    seq.numBlocksSeen = Math.floor(numTokens / this.#cache.blockSize);
    seq.numComputed = numTokens;
    return { tokenIds: seq.tokens.slice(0, numTokens), pages };
  }

  /**
   * Allocates the seq's KV for n new tokens and advances its accounting. `prefix`: its first
   * step after admission (flag `new`), with the cached prefix it starts from.
   */
  #plan(
    seq: Sequence,
    n: number,
    prefix: { tokenIds: number[]; pages: number[] } | null = null,
  ): PlannedSeq {
    const seqId = seq.seqId as number;
    const numCached = seq.numComputed;
    let flags = prefix !== null ? StepFlag.new : 0;
    let tokenIds: number[];
    if (seq.numKnownUncomputed > 0) {
      tokenIds = seq.tokens.slice(numCached, numCached + n);
      if (numCached + n === seq.tokens.length) flags |= StepFlag.sample;
    } else {
      tokenIds = [-1];
      flags |= StepFlag.useLastSampled | StepFlag.sample;
    }
    if (flags & StepFlag.sample) seq.pendingSamples++;
    seq.numComputed += n;
    if (seq.req.adapter !== null) this.#adapters.usedInStep(seq.req.adapter.name, this.#nextStepId);
    const kvPages = this.#pages.allocateKv(seqId, n);
    this.#cacheBlocks(seq, this.#nextStepId);
    return {
      seq,
      seqId,
      flags,
      numNewTokens: n,
      numCached,
      adapterId: seq.req.adapter === null ? -1 : this.#adapters.idOf(seq.req.adapter.name),
      tokenIds,
      kvPages,
      prefixTokenIds: prefix?.tokenIds ?? [],
      prefixKvPages: prefix?.pages ?? [],
    };
  }

  /**
   * Makes the seq's full blocks findable once their token ids are known and their KV is
   * computed, or being computed by step `stepId` at the latest.
   */
  #cacheBlocks(seq: Sequence, stepId: number): void {
    if (!this.#cache.enabled) return;
    const size = this.#cache.blockSize;
    const full = Math.floor(Math.min(seq.numComputed, seq.tokens.length) / size);
    if (full <= seq.numBlocksSeen) return;
    const table = this.#pages.seqPages(seq.seqId as number);
    const width = size * PAGES_PER_TOKEN;
    for (let i = seq.numBlocksSeen; i < full; i++) {
      const pages = Int32Array.from(table.slice(i * width, (i + 1) * width));
      const block = this.#cache.register(seq.hashes.at(i, seq.tokens), pages, stepId);
      if (block !== null) seq.blocks.push(block);
    }
    seq.numBlocksSeen = full;
  }

  #lastSent(): number | null {
    return this.#inFlight.at(-1)?.stepId ?? null;
  }

  #send(planned: PlannedSeq[]): StepPlan {
    const rows = inRowOrder(planned);
    const plan = buildStepPlan(this.#nextStepId++, this.#toFree, rows);
    this.#toFree = [];
    this.#inFlight.push({
      stepId: plan.stepId,
      sampled: rows.filter((p) => p.flags & StepFlag.sample).map((p) => p.seqId),
    });
    return plan;
  }

  /**
   * Gives a running seq's pages, executor state and adapter pin back; its full blocks stay
   * cached unless `keepBlocks` is false (its KV may be garbage).
   */
  #release(seq: Sequence, keepBlocks: boolean): void {
    const seqId = seq.seqId as number;
    const lastSent = this.#lastSent();
    if (keepBlocks) this.#cacheBlocks(seq, lastSent ?? -1);
    this.#pages.freeSeq(seqId, lastSent);
    this.#cache.release(seq.blocks, lastSent);
    seq.blocks = [];
    this.#toFree.push(seqId);
    this.#bySeqId.delete(seqId);
    this.running.splice(this.running.indexOf(seq), 1);
    if (seq.req.adapter !== null) this.#adapters.unpin(seq.req.adapter.name);
  }

  /**
   * Preemption by recompute (vLLM): the seq goes back to the front of its tenant's queue;
   * what it computed stays cached (unless `keepBlocks` is false), so it recomputes only
   * what is evicted meanwhile.
   */
  #preempt(seq: Sequence, keepBlocks = true): void {
    this.#release(seq, keepBlocks);
    seq.resetForRecompute();
    this.waiting.pushFront(seq);
    this.counters.preemptions++;
  }
}
