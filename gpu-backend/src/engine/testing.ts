// Test helpers (vLLM's create_scheduler / create_requests): build engines and requests, and
// a simulated executor that honours PROTOCOL.md's contract and computes tokens with a
// deterministic function of each sequence's history, so engine tests need no GPU.
import type { ModelInfo, StagedAdapter, StepPlan, StepResult } from "../protocol/messages.ts";
import { StepFlag } from "../protocol/messages.ts";
import type { AdapterOp } from "./adapters.ts";
import { defaultEngineConfig, type EngineConfig } from "./config.ts";
import { Engine } from "./engine.ts";
import type { RequestOutput } from "./output.ts";
import type { BlockHasher } from "./prefix-cache.ts";
import type { EngineRequest, SamplingParams } from "./request.ts";

export const EOS = 1;
/** host bytes a simulated adapter takes per pool page it needs */
export const HOST_BYTES_PER_PAGE = 100;

export function testModel(overrides: Partial<ModelInfo> = {}): ModelInfo {
  return {
    numPages: 4096,
    pageWidth: 64,
    numLayers: 2,
    hiddenSize: 128,
    intermediateSize: 256,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 32,
    vocabSize: 64,
    maxPosition: 2048,
    hostCacheBytes: 4 * 1024 ** 3,
    maxAdapterHostBytes: 64 * HOST_BYTES_PER_PAGE,
    dtype: "float32",
    device: "cpu",
    modules: { q: [128, 128], k: [128, 64], v: [128, 64], o: [128, 128] },
    eosTokenIds: [EOS],
    quantization: "none",
    ...overrides,
  };
}

/**
 * An injective block hash for tests (the server's is SHA-256): each distinct (parent,
 * tokens) gets the next id, so two blocks share an id exactly when their chains match.
 */
export function internBlockHasher(): BlockHasher {
  const ids = new Map<string, string>();
  return (parent, tokenIds) => {
    const key = `${parent}|${tokenIds.join(",")}`;
    let id = ids.get(key);
    if (id === undefined) {
      id = `b${ids.size}`;
      ids.set(key, id);
    }
    return id;
  };
}

export function createEngine(
  config: Partial<EngineConfig> = {},
  model: Partial<ModelInfo> = {},
): Engine {
  return new Engine(defaultEngineConfig(config), testModel(model), {
    hashBlock: internBlockHasher(),
  });
}

export const greedy: SamplingParams = {
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  seed: null,
  logprobs: null,
};

export interface RequestShape {
  numRequests: number;
  /** tenant of request i */
  tenant?: (i: number) => string;
  /** adapter name of request i, null = base model */
  adapter?: (i: number) => string | null;
  promptLength?: (i: number) => number;
  /** request i's prompt (overrides promptLength) */
  prompt?: (i: number) => number[];
  maxTokens?: (i: number) => number;
  ignoreEos?: boolean;
  deadlineMs?: (i: number) => number | null;
  idPrefix?: string;
}

/**
 * Requests with prompts of tokens >= 2 (never EOS), ids `${idPrefix}${i}`; each tenant is
 * its own cache salt, each adapter's sha256 is `sha-<name>`.
 */
export function createRequests(shape: RequestShape): EngineRequest[] {
  return Array.from({ length: shape.numRequests }, (_, i) => {
    const adapter = shape.adapter?.(i) ?? null;
    const promptLength = shape.promptLength?.(i) ?? 8;
    const tenant = shape.tenant?.(i) ?? "t0";
    return {
      id: `${shape.idPrefix ?? "r"}${i}`,
      tenant,
      cacheSalt: tenant,
      adapter:
        adapter === null
          ? null
          : { name: adapter, path: `/adapters/${adapter}`, sha256: `sha-${adapter}` },
      promptTokenIds:
        shape.prompt?.(i) ??
        Array.from({ length: promptLength }, (_, k) => 2 + ((i * 7 + k * 3) % 60)),
      sampling: greedy,
      maxTokens: shape.maxTokens?.(i) ?? 8,
      stopTokenIds: [],
      ignoreEos: shape.ignoreEos ?? true,
      grammarId: null,
      deadlineMs: shape.deadlineMs?.(i) ?? null,
      arrivalMs: 0,
    };
  });
}

/** The simulated model: the next token is a hash of the adapter and the whole history. */
function nextToken(history: readonly number[], adapter: string | null, vocab: number) {
  let h = 2166136261;
  for (const ch of adapter ?? "") h = Math.imul(h ^ ch.charCodeAt(0), 16777619);
  for (const t of history) h = Math.imul(h ^ t, 16777619);
  return (mix32(h) >>> 0) % vocab;
}

/**
 * murmur3's finalizer. FNV's low bits depend only on the inputs' low bits ((h ^ t) × 19
 * mod 64 for a vocab of 64): unmixed, every sequence read [x, 0, 0, ...], and a token lost
 * or repeated went unseen; this spreads every bit of the history over the low ones.
 */
function mix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}

/** What a request yields when it runs alone: the reference for every scheduling. */
export function referenceTokens(req: EngineRequest, model: ModelInfo): number[] {
  const history = [...req.promptTokenIds];
  const out: number[] = [];
  while (out.length < req.maxTokens) {
    const token = nextToken(history, req.adapter?.name ?? null, model.vocabSize);
    history.push(token);
    out.push(token);
    if (req.stopTokenIds.includes(token) || (!req.ignoreEos && model.eosTokenIds.includes(token))) {
      break;
    }
  }
  return out;
}

/** A 32-bit FNV-1a hash of `text` from `seed`, mixed. */
function hash32(text: string, seed: number): number {
  let h = 2166136261 ^ seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return mix32(h) >>> 0;
}

export class ContractViolation extends Error {
  override name = "ContractViolation";
}

interface SimSeq {
  history: number[];
  adapterId: number;
  /** K, V page per token of its KV */
  pages: number[];
  /** per position: what its K/V is the KV of (the adapter and the history up to it) */
  contents: string[];
  lastSampled: number | null;
  /** it read pages a failed step left unwritten: what it samples is wrong */
  tainted: boolean;
}

/**
 * Executes plans as PROTOCOL.md says and fails loudly where the engine breaks the contract:
 * a seq reading a page that does not hold its own history's K/V (a page reused too early,
 * or a cached prefix of other tokens or another adapter), a load into pages a step in
 * flight reads, numCached or a prefix not matching, an unknown or unloaded adapter, a free
 * of an unknown seq, rows of a step out of order. As the executor, it writes a step's K/V
 * before any seq of the step reads (PROTOCOL.md "Shared pages").
 */
export class SimulatedExecutor {
  readonly model: ModelInfo;
  /** pages an adapter of this name needs */
  readonly adapterPages: (name: string) => number;
  readonly #seqs = new Map<number, SimSeq>();
  /** what each page holds: `K:`/`V:` + a KV content, or `a${adapterId}` */
  readonly #writer = new Map<number, string>();
  /** adapter id -> its name and host bytes */
  readonly #staged = new Map<number, { name: string; hostBytes: number }>();
  #hostBytes = 0;
  readonly #loaded = new Map<number, Int32Array>();
  readonly #queued: StepPlan[] = [];
  stepsRun = 0;
  maxSeqsInStep = 0;
  maxTokensInStep = 0;
  maxStaged = 0;
  maxLoaded = 0;
  /** steps with a seq fed its own in-flight sample (StepFlag.useLastSampled) */
  pipelinedSteps = 0;
  /** new seqs whose cached prefix has pages another live seq holds too */
  sharedPrefixes = 0;

  constructor(model: ModelInfo, adapterPages: (name: string) => number = () => 16) {
    this.model = model;
    this.adapterPages = adapterPages;
  }

  get numQueued(): number {
    return this.#queued.length;
  }

  /** The host tier refuses what does not fit, as the executor does: the engine owns it. */
  stage(op: Extract<AdapterOp, { kind: "stage" }>): StagedAdapter {
    const numPages = this.adapterPages(op.name);
    const hostBytes = numPages * HOST_BYTES_PER_PAGE;
    if (hostBytes > this.model.maxAdapterHostBytes) {
      throw new ContractViolation(`adapter ${op.name} is larger than maxAdapterHostBytes`);
    }
    if (this.#staged.has(op.adapterId)) {
      throw new ContractViolation(`stage of adapter ${op.adapterId}, staged already`);
    }
    if (this.#hostBytes + hostBytes > this.model.hostCacheBytes) {
      throw new ContractViolation(
        `stage of adapter ${op.adapterId} (${hostBytes} bytes) into a host tier with ${this.model.hostCacheBytes - this.#hostBytes} bytes free`,
      );
    }
    this.#staged.set(op.adapterId, { name: op.name, hostBytes });
    this.#hostBytes += hostBytes;
    this.maxStaged = Math.max(this.maxStaged, this.#staged.size);
    return { adapterId: op.adapterId, rank: 8, scale: 2, targets: ["q", "v"], numPages, hostBytes };
  }

  /** Runs on a side stream at once: its pages must not be touched by any step in flight. */
  load(op: Extract<AdapterOp, { kind: "load" }>): void {
    if (!this.#staged.has(op.adapterId)) {
      throw new ContractViolation(`load of adapter ${op.adapterId} that is not staged`);
    }
    const busy = this.#pagesReadByQueuedSteps();
    for (const page of op.pages) {
      if (busy.has(page)) {
        throw new ContractViolation(
          `load of adapter ${op.adapterId} into page ${page}, in use by a step in flight`,
        );
      }
      this.#writer.set(page, `a${op.adapterId}`);
    }
    this.#loaded.set(op.adapterId, op.pages);
    this.maxLoaded = Math.max(this.maxLoaded, this.#loaded.size);
  }

  drop(op: Extract<AdapterOp, { kind: "drop" }>): void {
    for (const plan of this.#queued) {
      if (plan.adapterIds.includes(op.adapterId)) {
        throw new ContractViolation(
          `drop of adapter ${op.adapterId} used by step ${plan.stepId} in flight`,
        );
      }
    }
    this.#loaded.delete(op.adapterId);
    const staged = this.#staged.get(op.adapterId);
    if (op.tier === "host" && staged !== undefined) {
      this.#staged.delete(op.adapterId);
      this.#hostBytes -= staged.hostBytes;
    }
  }

  submit(plan: StepPlan): void {
    this.#queued.push(plan);
  }

  /** Runs the oldest submitted step. */
  runNext(): StepResult {
    const plan = this.#queued.shift();
    if (plan === undefined) throw new ContractViolation("no step to run");
    for (const seqId of plan.freeSeqIds) {
      if (!this.#seqs.delete(seqId)) {
        throw new ContractViolation(`free of unknown seq ${seqId}`);
      }
    }
    this.stepsRun++;
    this.maxSeqsInStep = Math.max(this.maxSeqsInStep, plan.seqIds.length);
    this.maxTokensInStep = Math.max(this.maxTokensInStep, plan.tokenIds.length);
    const seqs = this.#writeStep(plan);
    this.#spreadTaint(plan, seqs);
    // Every seq reads its whole page table, after the step's K/V is written.
    for (const [i, seq] of seqs.entries()) this.#checkReads(plan.seqIds[i] as number, seq);
    const rows: { seqId: number; token: number; topCount: number }[] = [];
    for (const [i, seq] of seqs.entries()) {
      if (!((plan.flags[i] as number) & StepFlag.sample)) continue;
      const token = nextToken(seq.history, this.#adapterName(seq), this.model.vocabSize);
      // A wrong token: the engine must not use what a seq that read garbage samples.
      seq.lastSampled = seq.tainted ? (token + 1) % this.model.vocabSize : token;
      const topCount = Math.max(0, plan.logprobs[i] ?? 0);
      rows.push({ seqId: plan.seqIds[i] as number, token: seq.lastSampled, topCount });
    }
    return {
      stepId: plan.stepId,
      seqIds: Uint32Array.from(rows.map((r) => r.seqId)),
      tokens: Int32Array.from(rows.map((r) => r.token)),
      // The sampled token at -0.5, then the tokens after it at -1.5, -2.5, ...
      logprobs: Float32Array.from(rows.map(() => -0.5)),
      topCounts: Int32Array.from(rows.map((r) => r.topCount)),
      topIds: Int32Array.from(
        rows.flatMap((r) =>
          Array.from({ length: r.topCount }, (_, k) => (r.token + k) % this.model.vocabSize),
        ),
      ),
      topLogprobs: Float32Array.from(
        rows.flatMap((r) => Array.from({ length: r.topCount }, (_, k) => -0.5 - k)),
      ),
      grammarErrors: new Uint8Array(rows.length),
      forwardMs: 1,
      sampleMs: 0,
    };
  }

  /** Every seq of the step takes its prefix and new tokens, and their K/V pages are written. */
  #writeStep(plan: StepPlan): SimSeq[] {
    const seqs: SimSeq[] = [];
    let offset = 0;
    let prefixOffset = 0;
    let pipelined = false;
    for (let i = 0; i < plan.seqIds.length; i++) {
      const seqId = plan.seqIds[i] as number;
      const flags = plan.flags[i] as number;
      const n = plan.numNewTokens[i] as number;
      const numCached = plan.numCached[i] as number;
      const seq = this.#seqFor(seqId, flags, plan.adapterIds[i] as number);
      if (flags & StepFlag.new) {
        const end = prefixOffset + numCached;
        if (end > plan.prefixTokenIds.length) {
          throw new ContractViolation(`step ${plan.stepId} seq ${seqId}: prefix cut short`);
        }
        const first = plan.prefixKvPages[2 * prefixOffset];
        if (
          end > prefixOffset &&
          [...this.#seqs.values()].some((o) => o.pages.includes(first as number))
        ) {
          this.sharedPrefixes++;
        }
        for (let p = prefixOffset; p < end; p++) {
          const pages = plan.prefixKvPages.subarray(2 * p, 2 * p + 2);
          this.#append(seq, plan.prefixTokenIds[p] as number, pages, false);
        }
        prefixOffset = end;
      }
      if (numCached !== seq.history.length) {
        throw new ContractViolation(
          `step ${plan.stepId} seq ${seqId}: numCached ${numCached}, executor has ${seq.history.length}`,
        );
      }
      for (let k = 0; k < n; k++) {
        let token = plan.tokenIds[offset + k] as number;
        if (k === 0 && flags & StepFlag.useLastSampled) {
          if (token !== -1 || seq.lastSampled === null) {
            throw new ContractViolation(`step ${plan.stepId} seq ${seqId}: bad useLastSampled`);
          }
          token = seq.lastSampled;
          pipelined = true;
        }
        if (token < 0 || token >= this.model.vocabSize) {
          throw new ContractViolation(`step ${plan.stepId} seq ${seqId}: token ${token}`);
        }
        const pages = plan.kvPages.subarray(2 * (offset + k), 2 * (offset + k) + 2);
        this.#append(seq, token, pages, true);
      }
      offset += n;
      seqs.push(seq);
    }
    if (prefixOffset !== plan.prefixTokenIds.length) {
      throw new ContractViolation(`step ${plan.stepId}: prefix arrays of seqs that are not new`);
    }
    if (pipelined) this.pipelinedSteps++;
    return seqs;
  }

  /**
   * A seq that reads a page a failed step left unwritten computes garbage K/V this step,
   * which taints the seqs of the step that read those pages in turn.
   */
  #spreadTaint(plan: StepPlan, seqs: SimSeq[]): void {
    const starts = [0];
    for (const n of plan.numNewTokens) starts.push((starts.at(-1) as number) + n);
    const spoil = (i: number): void => {
      const pages = plan.kvPages.subarray(2 * (starts[i] as number), 2 * (starts[i + 1] as number));
      for (const page of pages) this.#writer.set(page, "garbage");
    };
    for (const [i, seq] of seqs.entries()) if (seq.tainted) spoil(i);
    for (let changed = true; changed; ) {
      changed = false;
      for (const [i, seq] of seqs.entries()) {
        if (seq.tainted || !seq.pages.some((page) => this.#writer.get(page) === "garbage")) {
          continue;
        }
        seq.tainted = changed = true;
        spoil(i);
      }
    }
  }

  /** A token at the seq's next position, with its K, V pages; `write`: computed now. */
  #append(seq: SimSeq, token: number, pages: Int32Array, write: boolean): void {
    // The KV of a position is a function of the adapter and the history up to it: a 64-bit
    // hash chained over both names it (bounded length, distinct for distinct histories).
    const link = `${seq.contents.at(-1) ?? `adapter ${this.#adapterName(seq)}`}:${token}`;
    const key = `${hash32(link, 1)}.${hash32(link, 2)}`;
    seq.history.push(token);
    seq.contents.push(key);
    const [k, v] = pages as unknown as [number, number];
    seq.pages.push(k, v);
    if (write) {
      this.#writer.set(k, `K:${key}`);
      this.#writer.set(v, `V:${key}`);
    }
  }

  #adapterName(seq: SimSeq): string | null {
    return seq.adapterId === -1 ? null : (this.#staged.get(seq.adapterId)?.name ?? null);
  }

  /** The executor died: every queued step and all state are gone. */
  crash(): void {
    this.#seqs.clear();
    this.#writer.clear();
    this.#staged.clear();
    this.#hostBytes = 0;
    this.#loaded.clear();
    this.#queued.length = 0;
  }

  #seqFor(seqId: number, flags: number, adapterId: number): SimSeq {
    if (flags & StepFlag.new) {
      if (this.#seqs.has(seqId)) throw new ContractViolation(`new seq ${seqId} already exists`);
      const seq: SimSeq = {
        history: [],
        adapterId,
        pages: [],
        contents: [],
        lastSampled: null,
        tainted: false,
      };
      this.#seqs.set(seqId, seq);
    }
    const seq = this.#seqs.get(seqId);
    if (seq === undefined) throw new ContractViolation(`unknown seq ${seqId}`);
    if (seq.adapterId !== adapterId) throw new ContractViolation(`seq ${seqId} changed adapter`);
    if (adapterId !== -1 && !this.#loaded.has(adapterId)) {
      throw new ContractViolation(`seq ${seqId} uses adapter ${adapterId}, not loaded`);
    }
    return seq;
  }

  /** Every page the seq reads must hold the K/V of its own history (and adapter), or garbage once tainted. */
  #checkReads(seqId: number, seq: SimSeq): void {
    for (const [p, content] of seq.contents.entries()) {
      for (const [j, kind] of ["K", "V"].entries()) {
        const page = seq.pages[2 * p + j] as number;
        const holds = this.#writer.get(page);
        if (holds !== `${kind}:${content}` && !(seq.tainted && holds === "garbage")) {
          throw new ContractViolation(
            `seq ${seqId} reads page ${page} as ${kind} of position ${p}; it holds ${this.#writer.get(page)}`,
          );
        }
      }
    }
    const adapterPages = this.#loaded.get(seq.adapterId) ?? [];
    for (const page of adapterPages) {
      if (this.#writer.get(page) !== `a${seq.adapterId}`) {
        throw new ContractViolation(
          `adapter ${seq.adapterId} page ${page} overwritten by ${this.#writer.get(page)}`,
        );
      }
    }
  }

  #pagesReadByQueuedSteps(): Set<number> {
    const busy = new Set<number>();
    for (const plan of this.#queued) {
      for (const seqId of plan.seqIds)
        for (const page of this.#seqs.get(seqId)?.pages ?? []) busy.add(page);
      for (const page of plan.kvPages) busy.add(page);
      for (const page of plan.prefixKvPages) busy.add(page);
      for (const adapterId of plan.adapterIds)
        for (const page of this.#loaded.get(adapterId) ?? []) busy.add(page);
    }
    return busy;
  }
}

export interface DriveOptions {
  /** steps answered before giving up */
  maxSteps?: number;
  /** ms per step */
  stepMs?: number;
  /** called after every schedule, for invariant checks */
  afterSchedule?: (step: { plan: StepPlan | null; adapterOps: readonly AdapterOp[] }) => void;
  /** steps between a load op and its `ok` */
  loadSteps?: number;
  /** the executor dies before running this step; the engine is told it restarted */
  crashAtStep?: number;
  /** the requests the supervisor names suspects of that crash (probation.ts) */
  suspects?: string[];
  /** called once this many steps have run (to add requests) */
  arrivals?: { atStep: number; arrive: () => void }[];
  /** every output as it is emitted, with the engine time it was emitted at */
  onOutput?: (output: RequestOutput, nowMs: number) => void;
}

/**
 * The server's loop in miniature: schedule while the engine allows (pipelining when its
 * config allows 2 steps in flight), run the oldest step, feed results back. Returns every
 * output per request id, in order.
 */
export function drive(
  engine: Engine,
  sim: SimulatedExecutor,
  options: DriveOptions = {},
): Map<string, RequestOutput[]> {
  const outputs = new Map<string, RequestOutput[]>();
  const record = (list: RequestOutput[]): void => {
    for (const out of list) {
      options.onOutput?.(out, now);
      const seen = outputs.get(out.id) ?? [];
      if (seen.at(-1)?.finishReason)
        throw new ContractViolation(`output for ${out.id} after it finished`);
      seen.push(out);
      outputs.set(out.id, seen);
    }
  };
  const stepMs = options.stepMs ?? 10;
  const loadSteps = options.loadSteps ?? 1;
  let now = 0;
  let steps = 0;
  let crashAt = options.crashAtStep;
  const pendingLoads: { adapterId: number; dueStep: number }[] = [];
  const arrivals = (options.arrivals ?? []).toSorted((a, b) => a.atStep - b.atStep);
  const runOne = (): void => {
    now += stepMs;
    steps++;
    record(engine.update(sim.runNext(), now));
  };
  while (engine.hasUnfinishedRequests() || arrivals.length > 0) {
    if (steps > (options.maxSteps ?? 10_000)) throw new ContractViolation("engine did not finish");
    while ((arrivals[0]?.atStep ?? Number.POSITIVE_INFINITY) <= steps) {
      (arrivals.shift() as { arrive: () => void }).arrive();
    }
    if (!engine.hasUnfinishedRequests()) {
      if (arrivals.length === 0) break;
      // Idle until the next arrival.
      const next = (arrivals[0] as { atStep: number }).atStep;
      now += (next - steps) * stepMs;
      steps = next;
      continue;
    }
    if (steps === crashAt) {
      crashAt = undefined;
      sim.crash();
      pendingLoads.length = 0;
      record(engine.executorRestarted(sim.model, options.suspects));
    }
    for (const load of pendingLoads.filter((l) => l.dueStep <= steps)) {
      pendingLoads.splice(pendingLoads.indexOf(load), 1);
      engine.adapterLoaded(load.adapterId);
    }
    const send = (op: AdapterOp): void => {
      if (op.kind === "stage") record(engine.adapterStaged(sim.stage(op)));
      else if (op.kind === "load") {
        sim.load(op);
        pendingLoads.push({ adapterId: op.adapterId, dueStep: steps + loadSteps });
      } else sim.drop(op);
    };
    let planned = false;
    // As the server's loop: between steps at their limit, adapter work goes on.
    if (!engine.canSchedule()) for (const op of engine.prefetch()) send(op);
    if (engine.canSchedule()) {
      const step = engine.schedule(now);
      for (const op of step.adapterOps) send(op);
      record(step.finished);
      options.afterSchedule?.(step);
      if (step.plan !== null) {
        sim.submit(step.plan);
        planned = true;
      }
    }
    if (sim.numQueued > 0 && (!planned || !engine.canSchedule())) {
      runOne();
    } else if (!planned) {
      // Nothing runs: waiting on an adapter load only.
      now += stepMs;
      steps++;
    }
  }
  // Steps planned ahead of the last finish: their tokens belong to no request any more.
  while (sim.numQueued > 0) runOne();
  return outputs;
}

/** The token ids a request produced over all its outputs. */
export function tokensOf(outputs: RequestOutput[] | undefined): number[] {
  return (outputs ?? []).flatMap((o) => o.newTokenIds);
}
