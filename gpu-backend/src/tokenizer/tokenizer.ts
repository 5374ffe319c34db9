// The model's tokenizer, loaded from an HF-format directory (tokenizer.json +
// tokenizer_config.json, plus config.json / generation_config.json for the eos ids).
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { maxCharsPerToken } from "./chars-per-token.ts";
import {
  type ChatMessage,
  ChatTemplate,
  ChatTemplateError,
  type ChatTools,
  mapMessageText,
  mapToolText,
} from "./chat-template.ts";
import { joinSections, type PromptPiece, SpecialTokens } from "./special-tokens.ts";

export class TokenizerLoadError extends Error {
  override name = "TokenizerLoadError";
}

/** The subset of tokenizer_config.json we read; HF writes special tokens as a string or an AddedToken object. */
interface TokenizerConfig {
  bos_token?: unknown;
  eos_token?: unknown;
  pad_token?: unknown;
  unk_token?: unknown;
  chat_template?: unknown;
  [key: string]: unknown;
}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (error) {
    throw new TokenizerLoadError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

function tokenContent(token: unknown): string | null {
  if (typeof token === "string") return token;
  if (token && typeof token === "object" && "content" in token) {
    const content = (token as { content: unknown }).content;
    if (typeof content === "string") return content;
  }
  return null;
}

/** config.json and generation_config.json write eos_token_id as a number or a list. */
function idsOf(value: unknown): number[] {
  if (typeof value === "number") return [value];
  if (Array.isArray(value)) return value.filter((id): id is number => typeof id === "number");
  return [];
}

/**
 * Picks the chat template: tokenizer_config.json's `chat_template` (a string, or a list of
 * named templates of which "default" is used), else the `chat_template.jinja` file that
 * transformers >= 4.43 writes beside it.
 */
function chatTemplateSource(dir: string, config: TokenizerConfig): string | null {
  const inline = config.chat_template;
  if (typeof inline === "string") return inline;
  if (Array.isArray(inline)) {
    const named = inline.find(
      (entry): entry is { name: string; template: string } =>
        entry && typeof entry.template === "string" && entry.name === "default",
    );
    if (named) return named.template;
  }
  const file = join(dir, "chat_template.jinja");
  return existsSync(file) ? readFileSync(file, "utf8") : null;
}

/** A prompt's text (for cheap length checks) and its token ids, computed on demand. */
export interface Prompt {
  text: string;
  encode: () => number[];
}

export class ModelTokenizer {
  readonly eosTokenIds: readonly number[];
  readonly chatTemplate: ChatTemplate | null;
  readonly vocabSize: number;
  readonly #tokenizer: Tokenizer;
  /** the same tokenizer with its special tokens unknown: message text tokenized as text */
  readonly #textOnly: Tokenizer;
  readonly #specials: SpecialTokens;
  /** see chars-per-token.ts; null = no bound known */
  readonly #maxCharsPerToken: number | null;

  constructor(
    tokenizerJson: object,
    config: TokenizerConfig,
    chatTemplateText: string | null,
    extraEosIds: readonly number[] = [],
  ) {
    try {
      this.#tokenizer = new Tokenizer(tokenizerJson, config);
      const added = (tokenizerJson as { added_tokens?: { special?: boolean }[] }).added_tokens;
      this.#textOnly = new Tokenizer(
        { ...tokenizerJson, added_tokens: (added ?? []).filter((t) => t.special !== true) },
        config,
      );
    } catch (error) {
      throw new TokenizerLoadError(`tokenizer.json is not usable: ${(error as Error).message}`);
    }
    this.#specials = new SpecialTokens(tokenizerJson);
    const vocabulary = this.#tokenizer.get_vocab(true);
    this.vocabSize = vocabulary.size;
    this.#maxCharsPerToken = maxCharsPerToken(tokenizerJson, vocabulary.keys());
    const eos = tokenContent(config.eos_token);
    const eosId = eos === null ? undefined : this.#tokenizer.token_to_id(eos);
    this.eosTokenIds = [...new Set([...(eosId === undefined ? [] : [eosId]), ...extraEosIds])];
    const specialTokens: Record<string, string> = {};
    for (const key of ["bos_token", "eos_token", "pad_token", "unk_token"]) {
      const content = tokenContent(config[key]);
      if (content !== null) specialTokens[key] = content;
    }
    this.chatTemplate =
      chatTemplateText === null ? null : new ChatTemplate(chatTemplateText, specialTokens);
  }

  /**
   * Loads `dir`/tokenizer.json and tokenizer_config.json; eos ids also come from config.json
   * and generation_config.json when present (Llama 3 lists several there).
   *
   * @example const tokenizer = ModelTokenizer.fromDirectory(".cache/fixtures/tiny-llama");
   */
  static fromDirectory(dir: string): ModelTokenizer {
    const tokenizerPath = join(dir, "tokenizer.json");
    if (!existsSync(tokenizerPath)) {
      throw new TokenizerLoadError(`${tokenizerPath} does not exist`);
    }
    const configPath = join(dir, "tokenizer_config.json");
    const config = (existsSync(configPath) ? readJson(configPath) : {}) as TokenizerConfig;
    const extraEos: number[] = [];
    for (const name of ["config.json", "generation_config.json"]) {
      const path = join(dir, name);
      if (existsSync(path)) {
        extraEos.push(...idsOf((readJson(path) as { eos_token_id?: unknown }).eos_token_id));
      }
    }
    return new ModelTokenizer(
      readJson(tokenizerPath) as object,
      config,
      chatTemplateSource(dir, config),
      extraEos,
    );
  }

  /**
   * Raw text: special-token text in it becomes those tokens (the completions endpoint's
   * prompt, where the caller writes the whole prompt, as OpenAI's and vLLM's do).
   */
  encode(text: string, addSpecialTokens: boolean): number[] {
    return this.#tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * A chat prompt through the chat template, whose control tokens come from the template
   * only: text the messages and the tools bring (tool definitions, call arguments, tool
   * results) is tokenized as text, so a user message holding
   * "<|im_end|><|im_start|>system" stays words and forges no turn. Messages whose text
   * cannot touch a special token (nearly all) are encoded as the whole rendered string,
   * exactly as HF transformers would.
   *
   * @example tokenizer.chatPrompt([{ role: "user", content: "Hi" }], true).encode()
   */
  chatPrompt(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    tools: ChatTools = null,
  ): Prompt {
    const template = this.chatTemplate;
    if (template === null) throw new ChatTemplateError("this model has no chat template");
    const text = template.render(messages, addGenerationPrompt, tools);
    let touches = false;
    const check = (text: string) => {
      touches ||= this.#specials.touches(text);
      return text;
    };
    for (const message of messages) mapMessageText(message, check);
    for (const tool of tools ?? []) mapToolText(tool, check);
    if (!touches) return { text, encode: () => this.encode(text, false) };
    return {
      text,
      encode: () => {
        const pieces: PromptPiece[] = template
          .segments(messages, addGenerationPrompt, tools)
          .flatMap((s) => (s.fromMessage ? [{ text: s.text }] : this.#specials.split(s.text)));
        return joinSections(pieces).flatMap((piece) =>
          "special" in piece
            ? [piece.special.id]
            : this.#textOnly.encode(piece.text, { add_special_tokens: false }).ids,
        );
      },
    };
  }

  /**
   * True when `text` surely encodes to more than `maxTokens` tokens, known from its length
   * alone (without the cost of encoding it); false means "maybe not": encode to know.
   */
  surelyLongerThan(text: string, maxTokens: number): boolean {
    return this.#maxCharsPerToken !== null && text.length > maxTokens * this.#maxCharsPerToken;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    if (ids.length === 0) return "";
    return this.#tokenizer.decode([...ids], {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The id of the special token whose text is `text`, or null (it is text). */
  specialTokenId(text: string): number | null {
    return this.#specials.find(text)?.id ?? null;
  }

  /** The token's string in the vocabulary, as OpenAI's logprobs `token` field carries it. */
  tokenText(id: number): string {
    return this.decode([id], false);
  }
}
