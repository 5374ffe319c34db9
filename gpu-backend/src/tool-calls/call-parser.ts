// Reading calls out of generated text, shared by the formats: the calls a JSON value
// holds (an object is one call, an array a list), calls opened by a trigger anywhere in
// the text (Hermes, SmolLM2, Mistral), and a text that is calls from its start (Llama 3).
// A grammar shapes the calls of constrained requests; these parsers also read what a
// model wrote on its own (other spacing, key order, arguments as a JSON string), and
// leave what does not parse as text.
import type { ParsedOutput, PartialCall } from "./call-format.ts";
import { entryOf, type JsonNode, scanJson, skipWhitespace } from "./json-scan.ts";

const NOT_CALLS = null;

/**
 * The calls of one JSON value, null when it is not call-shaped: objects with a string
 * `name` and an object (or JSON-text string) under one of `argumentKeys`.
 */
export function callsOf(
  node: JsonNode,
  text: string,
  argumentKeys: string[],
): PartialCall[] | null {
  if (node.kind === "array") {
    const calls: PartialCall[] = [];
    for (const item of node.items) {
      const call = callOf(item, text, argumentKeys);
      if (call === NOT_CALLS) return NOT_CALLS;
      calls.push(call);
    }
    return calls;
  }
  const call = callOf(node, text, argumentKeys);
  return call === NOT_CALLS ? NOT_CALLS : [call];
}

function callOf(node: JsonNode, text: string, argumentKeys: string[]): PartialCall | null {
  if (node.kind !== "object") return NOT_CALLS;
  const name = entryOf(node, "name")?.value ?? null;
  if (name !== null && name.kind !== "string") return NOT_CALLS;
  if (name === null && node.end !== null) return NOT_CALLS; // a whole object without a name
  const args = entryOf(node, ...argumentKeys)?.value ?? null;
  let argumentsText = "";
  if (args?.kind === "object") {
    argumentsText = text.slice(args.start, args.end ?? text.length);
  } else if (args?.kind === "string") {
    // Some models write the arguments as JSON text in a string: known once it is whole.
    argumentsText = args.end === null ? "" : args.value;
  } else if (args !== null) {
    return NOT_CALLS;
  }
  const complete = node.end !== null && name?.end != null;
  if (complete) {
    if (args === null) argumentsText = "{}";
    if (!isJsonObject(argumentsText)) return NOT_CALLS;
  }
  return {
    name: name === null || name.end === null ? null : (name as { value: string }).value,
    arguments: argumentsText,
    complete,
  };
}

function isJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}

/** The longest end of `text` that `marker` starts with (text that may yet become it). */
export function heldBack(text: string, marker: string): number {
  for (let n = Math.min(marker.length - 1, text.length); n > 0; n--) {
    if (marker.startsWith(text.slice(text.length - n))) return n;
  }
  return 0;
}

/**
 * Calls opened by `trigger` anywhere in the text, each a JSON value (a call or a list of
 * calls), each maybe closed by `closeTag`; the text around them is the content.
 *
 * @example parseTagged('Hi <tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', true,
 *   { trigger: "<tool_call>", closeTag: "</tool_call>", argumentKeys: ["arguments"] })
 *   // { content: "Hi ", calls: [{ name: "f", arguments: "{}", complete: true }] }
 */
export function parseTagged(
  text: string,
  final: boolean,
  framing: { trigger: string; closeTag: string; argumentKeys: string[] },
): ParsedOutput {
  const { trigger, closeTag, argumentKeys } = framing;
  let content = "";
  const calls: PartialCall[] = [];
  let at = 0;
  for (;;) {
    const found = text.indexOf(trigger, at);
    if (found === -1) {
      let rest = text.slice(at);
      if (!final) rest = rest.slice(0, rest.length - heldBack(rest, trigger));
      if (calls.length === 0 || rest.trim() !== "") content += rest;
      break;
    }
    // Whitespace between calls is layout, not content.
    const before = text.slice(at, found);
    if (calls.length === 0 || before.trim() !== "") content += before;
    const start = skipWhitespace(text, found + trigger.length);
    if (start === text.length && !final) break; // the call has not begun yet
    const node = scanJson(text, start);
    const foundCalls = node === null ? NOT_CALLS : callsOf(node, text, argumentKeys);
    if (node === null || foundCalls === NOT_CALLS || (final && node.end === null)) {
      content += text.slice(found); // not a call after all: it stays text
      break;
    }
    calls.push(...foundCalls);
    if (node.end === null) break;
    at = node.end;
    if (closeTag !== "") {
      const close = skipWhitespace(text, at);
      if (text.startsWith(closeTag, close)) at = close + closeTag.length;
      else if (!final && closeTag.startsWith(text.slice(close))) at = text.length;
    }
  }
  return { content, calls };
}

/**
 * Calls that are the whole answer, from its start: JSON values separated by `;` (Llama
 * 3's JSON tool calling), after an optional `prefix` (its <|python_tag|>). An answer that
 * does not start so is all content.
 */
export function parseLeading(
  text: string,
  final: boolean,
  framing: { prefix: string; argumentKeys: string[] },
): ParsedOutput {
  let at = skipWhitespace(text, 0);
  if (text.startsWith(framing.prefix, at)) at = skipWhitespace(text, at + framing.prefix.length);
  else if (!final && framing.prefix.startsWith(text.slice(at))) return { content: "", calls: [] };
  if (at === text.length) return { content: final ? text : "", calls: [] };
  if (text[at] !== "{") return { content: text, calls: [] };
  const calls: PartialCall[] = [];
  for (;;) {
    const node = scanJson(text, at);
    const found = node === null ? NOT_CALLS : callsOf(node, text, framing.argumentKeys);
    if (node === null || found === NOT_CALLS || (final && node.end === null)) {
      return { content: text, calls: [] };
    }
    calls.push(...found);
    if (node.end === null) return { content: "", calls };
    at = skipWhitespace(text, node.end);
    if (text[at] !== ";") break;
    at = skipWhitespace(text, at + 1);
    if (at === text.length) break;
  }
  // Text after the calls is not Llama 3's format: the whole answer is then content.
  return at < text.length ? { content: text, calls: [] } : { content: "", calls };
}
