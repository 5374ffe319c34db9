// A model's chat template (Jinja, as HF transformers renders it) turning OpenAI chat
// messages into one prompt string.
import { Template } from "@huggingface/jinja";

export class ChatTemplateError extends Error {
  override name = "ChatTemplateError";
}

export interface ChatMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

/** A piece of a rendered prompt: the template's own text, or text a message brought. */
export interface ChatSegment {
  text: string;
  fromMessage: boolean;
}

export class ChatTemplate {
  readonly #template: Template;
  readonly #specialTokens: Readonly<Record<string, string>>;

  /** `specialTokens`: bos_token, eos_token, … as tokenizer_config.json names them. */
  constructor(source: string, specialTokens: Readonly<Record<string, string>>) {
    try {
      this.#template = new Template(source);
    } catch (error) {
      throw new ChatTemplateError(`chat template does not parse: ${(error as Error).message}`);
    }
    this.#specialTokens = specialTokens;
  }

  /**
   * @example template.render([{ role: "user", content: "Hi" }], true)
   *   // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" for ChatML
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    return this.#render(messages, addGenerationPrompt);
  }

  /**
   * The rendered prompt cut into the template's text and the messages' text (every string a
   * message holds but its role), so the messages' text can be tokenized as text. The cut is
   * found by rendering each message string between markers, then checked against the plain
   * render; a template that uses message text other than verbatim or trimmed (so the cut
   * cannot be found) gets a ChatTemplateError.
   *
   * @example template.segments([{ role: "user", content: "Hi" }], true)
   *   // [{ text: "<|im_start|>user\n", fromMessage: false }, { text: "Hi", fromMessage: true }, ...]
   */
  segments(messages: readonly ChatMessage[], addGenerationPrompt: boolean): ChatSegment[] {
    const plain = this.#render(messages, addGenerationPrompt);
    const nonce = crypto.randomUUID();
    const open = `\uE000${nonce}\uE001`;
    const close = `\uE002${nonce}\uE003`;
    for (const shape of [(text: string) => text, (text: string) => text.trim()]) {
      const marked = this.#render(
        messages.map((m) => mapMessageText(m, (text) => `${open}${shape(text)}${close}`)),
        addGenerationPrompt,
      );
      const segments = cutAtMarkers(marked, open, close);
      if (segments !== null && segments.map((s) => s.text).join("") === plain) return segments;
    }
    throw new ChatTemplateError(
      "the chat template uses message text in a way that cannot be kept apart from its control tokens; this message text holds special-token text, which this model cannot take",
    );
  }

  #render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    try {
      return this.#template.render({
        ...this.#specialTokens,
        messages,
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (error) {
      // Also what a template's raise_exception(...) throws when it refuses a conversation
      // (e.g. roles that do not alternate); it reaches the client as a 400.
      throw new ChatTemplateError(`chat template failed: ${(error as Error).message}`);
    }
  }
}

/** The message with every string it holds but its role (its text) passed through `map`. */
export function mapMessageText(message: ChatMessage, map: (text: string) => string): ChatMessage {
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return map(value);
    if (Array.isArray(value)) return value.map(walk);
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    }
    return value;
  };
  const { role, ...rest } = message;
  return { ...(walk(rest) as ChatMessage), role };
}

/** Segments of `marked` between open/close markers; null when the markers do not pair up. */
function cutAtMarkers(marked: string, open: string, close: string): ChatSegment[] | null {
  const segments: ChatSegment[] = [];
  let at = 0;
  while (at < marked.length) {
    const start = marked.indexOf(open, at);
    const template = marked.slice(at, start === -1 ? marked.length : start);
    if (template.includes(close)) return null;
    if (template !== "") segments.push({ text: template, fromMessage: false });
    if (start === -1) break;
    const end = marked.indexOf(close, start + open.length);
    const text = end === -1 ? null : marked.slice(start + open.length, end);
    if (text === null || text.includes(open)) return null;
    if (text !== "") segments.push({ text, fromMessage: true });
    at = end + close.length;
  }
  return segments;
}
