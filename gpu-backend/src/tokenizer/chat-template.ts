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

/** Tool definitions as HF's apply_chat_template passes them (`tools`); null = none. */
export type ChatTools = readonly Record<string, unknown>[] | null;

export class ChatTemplate {
  readonly #template: Template;
  readonly #specialTokens: Readonly<Record<string, string>>;
  /** whether the template reads the `tools` variable (else tools need a prompt block) */
  readonly takesTools: boolean;

  /** `specialTokens`: bos_token, eos_token, … as tokenizer_config.json names them. */
  constructor(source: string, specialTokens: Readonly<Record<string, string>>) {
    try {
      this.#template = new Template(source);
    } catch (error) {
      throw new ChatTemplateError(`chat template does not parse: ${(error as Error).message}`);
    }
    this.#specialTokens = specialTokens;
    this.takesTools = /\btools\b/.test(source);
  }

  /**
   * @example template.render([{ role: "user", content: "Hi" }], true)
   *   // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n" for ChatML
   */
  render(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    tools: ChatTools = null,
  ): string {
    return this.#render(messages, addGenerationPrompt, tools);
  }

  /**
   * The rendered prompt cut into the template's text and the messages' text (every string a
   * message holds but its role, and every string of the tools, keys included), so that text
   * can be tokenized as text. The cut is found by rendering each such string between
   * markers, then checked against the plain render; a template that uses that text other
   * than verbatim or trimmed (so the cut cannot be found) gets a ChatTemplateError.
   *
   * @example template.segments([{ role: "user", content: "Hi" }], true)
   *   // [{ text: "<|im_start|>user\n", fromMessage: false }, { text: "Hi", fromMessage: true }, ...]
   */
  segments(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    tools: ChatTools = null,
  ): ChatSegment[] {
    const plain = this.#render(messages, addGenerationPrompt, tools);
    const nonce = crypto.randomUUID();
    const open = `\uE000${nonce}\uE001`;
    const close = `\uE002${nonce}\uE003`;
    for (const shape of [(text: string) => text, (text: string) => text.trim()]) {
      const mark = (text: string) => `${open}${shape(text)}${close}`;
      const marked = this.#render(
        messages.map((m) => mapMessageText(m, mark)),
        addGenerationPrompt,
        tools === null ? null : tools.map((tool) => mapToolText(tool, mark)),
      );
      const segments = cutAtMarkers(marked, open, close);
      if (segments !== null && segments.map((s) => s.text).join("") === plain) return segments;
    }
    throw new ChatTemplateError(
      "the chat template uses message text in a way that cannot be kept apart from its control tokens; this message text holds special-token text, which this model cannot take",
    );
  }

  #render(
    messages: readonly ChatMessage[],
    addGenerationPrompt: boolean,
    tools: ChatTools,
  ): string {
    try {
      return this.#template.render({
        ...this.#specialTokens,
        messages,
        ...(tools === null ? {} : { tools }),
        add_generation_prompt: addGenerationPrompt,
      });
    } catch (error) {
      // Also what a template's raise_exception(...) throws when it refuses a conversation
      // (e.g. roles that do not alternate); it reaches the client as a 400.
      throw new ChatTemplateError(`chat template failed: ${(error as Error).message}`);
    }
  }
}

/**
 * The message with every string it holds but its role (its text) passed through `map`;
 * the keys of a call's arguments object are text the model or the client wrote, too.
 */
export function mapMessageText(message: ChatMessage, map: (text: string) => string): ChatMessage {
  const { role, tool_calls, ...rest } = message;
  const mapped = walkText(rest, map, false) as ChatMessage;
  if (Array.isArray(tool_calls)) {
    mapped.tool_calls = tool_calls.map((call: { function?: { arguments?: unknown } }) => {
      const { function: fn, ...callRest } = call;
      if (fn === undefined) return walkText(callRest, map, false);
      const { arguments: args, ...fnRest } = fn;
      return {
        ...(walkText(callRest, map, false) as object),
        function: {
          ...(walkText(fnRest, map, false) as object),
          arguments: walkText(args, map, true),
        },
      };
    });
  }
  return { ...mapped, role };
}

/** A tool definition with every string passed through `map`, keys (property names) too. */
export function mapToolText(
  tool: Readonly<Record<string, unknown>>,
  map: (text: string) => string,
): Record<string, unknown> {
  return walkText(tool, map, true) as Record<string, unknown>;
}

function walkText(value: unknown, map: (text: string) => string, keys: boolean): unknown {
  if (typeof value === "string") return map(value);
  if (Array.isArray(value)) return value.map((item) => walkText(item, map, keys));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [keys ? map(k) : k, walkText(v, map, keys)]),
    );
  }
  return value;
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
