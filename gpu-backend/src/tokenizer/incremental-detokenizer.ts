// Turns a growing list of token ids into text deltas for streaming without ever emitting
// a broken character: as vLLM and TGI, it decodes a short window
// tokens[prefixOffset..] and emits only what that window adds beyond
// tokens[prefixOffset..readOffset], and waits while the text ends in U+FFFD (a UTF-8
// sequence split across tokens, e.g. an emoji's 4 bytes in 2 byte-level tokens).
// Decoding a window instead of one token keeps the spacing rules of tokenizers whose
// decode of a token depends on its neighbour (SentencePiece's leading "▁").

/** What the detokenizer needs from a tokenizer. */
export interface TokenDecoder {
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
}

/** How many prompt tokens seed the window, as vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET. */
const PROMPT_CONTEXT = 5;

const REPLACEMENT = "\uFFFD";

export class IncrementalDetokenizer {
  readonly #decoder: TokenDecoder;
  readonly #skipSpecialTokens: boolean;
  readonly #tokens: number[];
  #prefixOffset = 0;
  #readOffset: number;

  /**
   * @example
   *   const detok = new IncrementalDetokenizer(tokenizer, promptIds);
   *   for (const id of generated) send(detok.push(id));
   *   send(detok.finish());
   */
  constructor(decoder: TokenDecoder, promptIds: readonly number[], skipSpecialTokens = true) {
    this.#decoder = decoder;
    this.#skipSpecialTokens = skipSpecialTokens;
    this.#tokens = promptIds.slice(-PROMPT_CONTEXT);
    this.#readOffset = this.#tokens.length;
  }

  /** Adds one generated token; returns the text it completes ("" while a character is split). */
  push(id: number): string {
    this.#tokens.push(id);
    const prefixText = this.#decode(this.#readOffset);
    const fullText = this.#decode(this.#tokens.length);
    if (fullText.length <= prefixText.length || fullText.endsWith(REPLACEMENT)) return "";
    this.#prefixOffset = this.#readOffset;
    this.#readOffset = this.#tokens.length;
    return fullText.slice(prefixText.length);
  }

  /** The text still held at the end of generation (a truly invalid tail decodes to U+FFFD, as a full decode would). */
  finish(): string {
    const prefixText = this.#decode(this.#readOffset);
    const fullText = this.#decode(this.#tokens.length);
    this.#prefixOffset = this.#readOffset = this.#tokens.length;
    return fullText.slice(prefixText.length);
  }

  #decode(end: number): string {
    return this.#decoder.decode(
      this.#tokens.slice(this.#prefixOffset, end),
      this.#skipSpecialTokens,
    );
  }
}
