// One request's output as the server consumes it: the engine's token outputs turned
// into text deltas (incremental detokenization, stop strings held back and cut), with
// their logprobs, delivered through an async iterator that ends with a finish reason.
import type { FinishReason, RequestOutput, TokenLogprobs } from "../engine/index.ts";
import { IncrementalDetokenizer } from "../tokenizer/incremental-detokenizer.ts";
import { StopMatcher } from "../tokenizer/stop-matcher.ts";
import type { ModelTokenizer } from "../tokenizer/tokenizer.ts";

/** One sampled token as the OpenAI logprobs fields carry it. */
export interface TokenInfo {
  id: number;
  text: string;
  /** null when logprobs were not asked for */
  logprob: number | null;
  top: { id: number; text: string; logprob: number }[];
}

export interface GenerationDelta {
  /** new text, never a broken character nor part of a stop string */
  text: string;
  /** tokens sampled since the last delta (an EOS / stop token excluded) */
  tokens: TokenInfo[];
  /** set on the last delta */
  finishReason: Exclude<FinishReason, "error"> | null;
  numPromptTokens: number;
  /** prompt tokens the prefix cache had (usage's prompt_tokens_details.cached_tokens) */
  numCachedTokens: number;
  numOutputTokens: number;
}

type Waiter = (result: IteratorResult<GenerationDelta>) => void;

export class GenerationStream implements AsyncIterable<GenerationDelta> {
  readonly id: string;
  readonly #tokenizer: ModelTokenizer;
  readonly #detokenizer: IncrementalDetokenizer;
  readonly #stops: StopMatcher;
  readonly #pending: GenerationDelta[] = [];
  #waiter: Waiter | null = null;
  #rejecter: ((error: Error) => void) | null = null;
  #error: Error | null = null;
  #done = false;
  /** set when the client stops reading (disconnect): the owner aborts the request */
  readonly #onCancel: () => void;
  readonly #started: Promise<void>;
  #markStarted: (error: Error | null) => void = () => {};

  /**
   * `text.stops`: stop strings; `text.keepSpecialTokens`: special tokens stay in the text
   * (a tool-call format that opens its calls with one).
   */
  constructor(
    id: string,
    tokenizer: ModelTokenizer,
    promptIds: readonly number[],
    text: { stops: readonly string[]; keepSpecialTokens: boolean },
    onCancel: () => void,
  ) {
    this.id = id;
    this.#tokenizer = tokenizer;
    this.#detokenizer = new IncrementalDetokenizer(tokenizer, promptIds, !text.keepSpecialTokens);
    this.#stops = new StopMatcher(text.stops);
    this.#onCancel = onCancel;
    this.#started = new Promise<void>((resolve, reject) => {
      this.#markStarted = (error) => (error === null ? resolve() : reject(error));
    });
    this.#started.catch(() => {}); // also reported through the iterator
  }

  get finished(): boolean {
    return this.#done;
  }

  /**
   * Settles with the first output (or the end): rejects when the request failed before
   * producing any, e.g. its adapter was refused. A streamed answer awaits this before
   * sending its 200, so such failures get their own status (and the gateway can still
   * fail over) instead of an error event inside a 200 stream.
   */
  started(): Promise<void> {
    return this.#started;
  }

  /**
   * Feeds one engine output. Returns true when a stop string ended the request here: the
   * owner must then abort it in the engine.
   */
  push(output: RequestOutput): boolean {
    if (this.#done) return false;
    if (output.finishReason === "error") {
      this.fail(new Error(output.error ?? "generation failed"));
      return false;
    }
    const ids = output.stopTokenId === null ? output.newTokenIds : output.newTokenIds.slice(0, -1);
    let text = "";
    for (const id of ids) text += this.#detokenizer.push(id);
    const finishing = output.finishReason !== null;
    if (finishing) text += this.#detokenizer.finish();
    const match = this.#stops.push(text);
    let finishReason = output.finishReason;
    let emitted = match.text;
    if (match.stopped) finishReason = "stop";
    else if (finishing) emitted += this.#stops.finish();
    this.#emit({
      text: emitted,
      tokens: ids.map((id, i) => this.#tokenInfo(id, output.logprobs?.[i] ?? null)),
      finishReason: finishReason as GenerationDelta["finishReason"],
      numPromptTokens: output.numPromptTokens,
      numCachedTokens: output.numCachedTokens,
      numOutputTokens: output.numOutputTokens,
    });
    return match.stopped && output.finishReason === null;
  }

  /** Ends the stream with an error the consumer sees as a rejected next(). */
  fail(error: Error): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#markStarted(error);
    const reject = this.#rejecter;
    this.#waiter = this.#rejecter = null;
    reject?.(error);
  }

  #tokenInfo(id: number, logprobs: TokenLogprobs | null): TokenInfo {
    return {
      id,
      text: this.#tokenizer.tokenText(id),
      logprob: logprobs?.logprob ?? null,
      top: (logprobs?.top ?? []).map((entry) => ({
        id: entry.tokenId,
        text: this.#tokenizer.tokenText(entry.tokenId),
        logprob: entry.logprob,
      })),
    };
  }

  #emit(delta: GenerationDelta): void {
    if (delta.finishReason !== null) this.#done = true;
    this.#markStarted(null);
    const waiter = this.#waiter;
    if (waiter) {
      this.#waiter = this.#rejecter = null;
      waiter({ value: delta, done: false });
    } else {
      this.#pending.push(delta);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<GenerationDelta> {
    let ended = false;
    return {
      next: () => {
        const next = this.#pending.shift();
        if (next) return Promise.resolve({ value: next, done: false });
        if (this.#error) return Promise.reject(this.#error);
        if (this.#done || ended) {
          ended = true;
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise<IteratorResult<GenerationDelta>>((resolve, reject) => {
          this.#waiter = resolve;
          this.#rejecter = reject;
        });
      },
      return: () => {
        ended = true;
        if (!this.#done) {
          this.#done = true;
          this.#markStarted(null);
          this.#onCancel();
        }
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
