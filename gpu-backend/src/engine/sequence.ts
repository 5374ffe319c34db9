import type { FinishReason, RequestOutput, TokenLogprobs } from "./output.ts";
import type { BlockHashes, KvBlock } from "./prefix-cache.ts";
import type { EngineRequest } from "./request.ts";

/**
 * A request's life in the engine: queued, then running as one executor sequence (a fresh
 * seq id per admission), back to queued when preempted, then finished.
 *
 * Token accounting with steps in flight (vLLM v1's async scheduling):
 *   tokens          prompt + output tokens whose ids are known
 *   pendingSamples  samples asked for in steps still in flight (ids not known yet)
 *   numComputed     tokens whose KV is computed or being computed by a step in flight
 * so a sequence's length is tokens.length + pendingSamples, and a decoding one has
 * numComputed = length - 1: its last token (known, or the pending sample the executor
 * feeds back with StepFlag.useLastSampled) is the next to compute. An admission that finds
 * a cached prefix starts with numComputed = the prefix's length.
 */
export class Sequence {
  readonly req: EngineRequest;
  readonly tokens: number[];
  readonly numPrompt: number;
  status: "waiting" | "running" | "finished" = "waiting";
  /** the executor's seq id while running, else null */
  seqId: number | null = null;
  numComputed = 0;
  pendingSamples = 0;
  /** the prompt's VTC cost is charged on the first admission only, not on recompute */
  charged = false;
  /** the chained hashes of its full blocks (prefix caching), kept across admissions */
  readonly hashes: BlockHashes;
  /** cached blocks this admission holds (prefix hits and blocks it computed), in order */
  blocks: KvBlock[] = [];
  /** full blocks of this admission that are held, cached, or kept private as duplicates */
  numBlocksSeen = 0;
  /** prompt tokens the first admission took from the prefix cache (usage's cached tokens) */
  numCachedPrompt = 0;
  /** tokens[numEmitted..] and their logprobs have not been reported yet */
  #numEmitted: number;
  readonly #unsentLogprobs: TokenLogprobs[] = [];
  /** the EOS or stop token sampled last, which ended the request */
  #stopTokenId: number | null = null;

  constructor(req: EngineRequest, hashes: BlockHashes) {
    this.req = req;
    this.hashes = hashes;
    this.tokens = [...req.promptTokenIds];
    this.numPrompt = req.promptTokenIds.length;
    this.#numEmitted = this.tokens.length;
  }

  get numOutput(): number {
    return this.tokens.length - this.numPrompt;
  }

  /** Tokens of this admission still to compute whose ids are known (prefill, recompute). */
  get numKnownUncomputed(): number {
    return this.tokens.length - this.numComputed;
  }

  /** True when every output token is either known or asked for. */
  get outputBudgetSpent(): boolean {
    return this.numOutput + this.pendingSamples >= this.req.maxTokens;
  }

  /** Appends a sampled token; returns why it finishes the request, or null. */
  appendSample(
    tokenId: number,
    logprobs: TokenLogprobs | null,
    eosTokenIds: readonly number[],
  ): FinishReason | null {
    this.tokens.push(tokenId);
    this.pendingSamples--;
    if (logprobs !== null) this.#unsentLogprobs.push(logprobs);
    // A grammar's end is an EOS (all it allows then): it ends the request even with
    // ignoreEos, or the request would only repeat EOS up to maxTokens.
    const eosStops = !this.req.ignoreEos || this.req.grammarId !== null;
    if (this.req.stopTokenIds.includes(tokenId) || (eosStops && eosTokenIds.includes(tokenId))) {
      this.#stopTokenId = tokenId;
      return "stop";
    }
    if (this.numOutput >= this.req.maxTokens) return "length";
    return null;
  }

  /**
   * Forgets the executor sequence (its pages and blocks already released); the next
   * admission takes what the prefix cache still has and recomputes the rest.
   */
  resetForRecompute(): void {
    this.status = "waiting";
    this.seqId = null;
    this.numComputed = 0;
    this.pendingSamples = 0;
    this.blocks = [];
    this.numBlocksSeen = 0;
  }

  /** The tokens (and logprobs) not reported yet, as one output; marks them reported. */
  takeOutput(finishReason: FinishReason | null, error: string | null = null): RequestOutput {
    const newTokenIds = this.tokens.slice(this.#numEmitted);
    this.#numEmitted = this.tokens.length;
    const logprobs = this.req.sampling.logprobs === null ? null : this.#unsentLogprobs.splice(0);
    return {
      id: this.req.id,
      tenant: this.req.tenant,
      newTokenIds,
      logprobs,
      finishReason,
      stopTokenId: finishReason === "stop" ? this.#stopTokenId : null,
      error,
      numPromptTokens: this.numPrompt,
      numCachedTokens: this.numCachedPrompt,
      numOutputTokens: this.numOutput,
    };
  }
}
