// A streamed answer's chat deltas as OpenAI sends them when tools are on: text as
// `content`, then per call first {index, id, type, function: {name, arguments: ""}} and
// then pieces of its arguments ({index, function: {arguments}}); with the legacy
// `functions`, `function_call` pieces instead. Each push re-reads the whole text so far
// (call-format.ts `parse`) and sends only what is new and final.
import type { CallFormat, ParsedOutput } from "./call-format.ts";

/** One `delta` object of a chat.completion.chunk. */
export type ChatDelta = Record<string, unknown>;

interface SentCall {
  id: string;
  /** characters of its arguments text sent */
  argumentsSent: number;
}

export class CallDeltas {
  readonly #format: CallFormat;
  readonly #legacy: boolean;
  #text = "";
  #contentSent = 0;
  readonly #calls: SentCall[] = [];

  /** `legacy`: the request used `functions` (one call, sent as `function_call`). */
  constructor(format: CallFormat, legacy: boolean) {
    this.#format = format;
    this.#legacy = legacy;
  }

  /** Whether a call has begun (the answer then finishes with "tool_calls"). */
  get sawCalls(): boolean {
    return this.#calls.length > 0;
  }

  /**
   * The deltas that `text` (the answer's next text) adds; `final` on the last push, which
   * releases text held back as a possible call opening.
   *
   * @example deltas.push('<tool_call>\n{"name": "f", "arguments": {"a"', false)
   *   // [{ tool_calls: [{ index: 0, id: "call_…", type: "function", function: { name: "f", arguments: "" } }] },
   *   //  { tool_calls: [{ index: 0, function: { arguments: '{"a"' } }] }]
   */
  push(text: string, final: boolean): ChatDelta[] {
    this.#text += text;
    const parsed = this.#format.parse(this.#text, final);
    // A final read that disagrees with what went out (a call cut by max_tokens reads as
    // text at the end) changes nothing already sent.
    if (final && parsed.calls.length < this.#calls.length) return [];
    return [...this.#content(parsed), ...this.#callDeltas(parsed)];
  }

  #content(parsed: ParsedOutput): ChatDelta[] {
    const { content } = parsed;
    // Whitespace before a call is not content (`content: null` for an answer of calls).
    if (content.length <= this.#contentSent || content.trim() === "") return [];
    const delta = content.slice(this.#contentSent);
    this.#contentSent = content.length;
    return [{ content: delta }];
  }

  #callDeltas(parsed: ParsedOutput): ChatDelta[] {
    const deltas: ChatDelta[] = [];
    const calls = this.#legacy ? parsed.calls.slice(0, 1) : parsed.calls;
    for (const [index, call] of calls.entries()) {
      if (call.name === null) break;
      let sent = this.#calls[index];
      if (sent === undefined) {
        sent = { id: this.#format.callId(), argumentsSent: 0 };
        this.#calls.push(sent);
        const fn = { name: call.name, arguments: "" };
        deltas.push(
          this.#legacy
            ? { function_call: fn }
            : { tool_calls: [{ index, id: sent.id, type: "function", function: fn }] },
        );
      }
      const piece = call.arguments.slice(sent.argumentsSent);
      if (piece === "") continue;
      sent.argumentsSent = call.arguments.length;
      deltas.push(
        this.#legacy
          ? { function_call: { arguments: piece } }
          : { tool_calls: [{ index, function: { arguments: piece } }] },
      );
    }
    return deltas;
  }
}
