// A JSON value read from generated text that may stop anywhere: the parts seen so far,
// each with where it starts and (once complete) where it ends, so a streamed call can
// send exactly the text of its arguments that is already final. JSON.parse then checks a
// complete value; this only finds its shape and its ends.

/** A JSON value in text; `end` is null while the text stops inside it. */
export type JsonNode =
  | { kind: "object"; start: number; end: number | null; entries: JsonEntry[] }
  | { kind: "array"; start: number; end: number | null; items: JsonNode[] }
  /** `value`: the characters decoded so far */
  | { kind: "string"; start: number; end: number | null; value: string }
  /** a number, true, false or null: complete only once something follows it */
  | { kind: "scalar"; start: number; end: number | null };

export interface JsonEntry {
  /** null while the key is not complete */
  key: string | null;
  /** null until the value has begun */
  value: JsonNode | null;
}

class NotJson extends Error {}

const WHITESPACE = /[ \t\n\r]/;
const ESCAPES: Record<string, string> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/**
 * The JSON value at `start` (after whitespace) of `text`, complete or cut by the text's
 * end; null when the text there is not (the beginning of) JSON.
 *
 * @example scanJson('x {"a": [1, "b', 2)
 *   // { kind: "object", start: 2, end: null, entries: [{ key: "a", value: { kind: "array", ... } }] }
 */
export function scanJson(text: string, start: number): JsonNode | null {
  const scanner = new Scanner(text);
  try {
    return scanner.value(scanner.skip(start));
  } catch (error) {
    if (error instanceof NotJson) return null;
    throw error;
  }
}

/** Index of the first non-whitespace character at or after `at`. */
export function skipWhitespace(text: string, at: number): number {
  let i = at;
  while (i < text.length && WHITESPACE.test(text[i] as string)) i++;
  return i;
}

class Scanner {
  readonly #text: string;

  constructor(text: string) {
    this.#text = text;
  }

  skip(at: number): number {
    return skipWhitespace(this.#text, at);
  }

  /** The value at `at`; throws NotJson. At the text's end: null is not possible here. */
  value(at: number): JsonNode {
    const c = this.#text[at];
    if (c === undefined) throw new NotJson();
    if (c === "{") return this.#object(at);
    if (c === "[") return this.#array(at);
    if (c === '"') return this.#string(at);
    if (/[-0-9tfn]/.test(c)) return this.#scalar(at);
    throw new NotJson();
  }

  #object(start: number): JsonNode {
    const node: JsonNode = { kind: "object", start, end: null, entries: [] };
    let at = this.skip(start + 1);
    if (this.#text[at] === "}") return { ...node, end: at + 1 };
    while (at < this.#text.length) {
      if (this.#text[at] !== '"') throw new NotJson();
      const key = this.#string(at);
      const entry: JsonEntry = { key: key.end === null ? null : key.value, value: null };
      node.entries.push(entry);
      if (key.end === null) return node;
      at = this.skip(key.end);
      if (at >= this.#text.length) return node;
      if (this.#text[at] !== ":") throw new NotJson();
      at = this.skip(at + 1);
      if (at >= this.#text.length) return node;
      entry.value = this.value(at);
      if (entry.value.end === null) return node;
      at = this.skip(entry.value.end);
      if (at >= this.#text.length) return node;
      if (this.#text[at] === "}") return { ...node, end: at + 1 };
      if (this.#text[at] !== ",") throw new NotJson();
      at = this.skip(at + 1);
    }
    return node;
  }

  #array(start: number): JsonNode {
    const node = {
      kind: "array" as const,
      start,
      end: null as number | null,
      items: [] as JsonNode[],
    };
    let at = this.skip(start + 1);
    if (this.#text[at] === "]") return { ...node, end: at + 1 };
    while (at < this.#text.length) {
      const item = this.value(at);
      node.items.push(item);
      if (item.end === null) return node;
      at = this.skip(item.end);
      if (at >= this.#text.length) return node;
      if (this.#text[at] === "]") return { ...node, end: at + 1 };
      if (this.#text[at] !== ",") throw new NotJson();
      at = this.skip(at + 1);
    }
    return node;
  }

  #string(start: number): JsonNode & { kind: "string" } {
    let value = "";
    let at = start + 1;
    while (at < this.#text.length) {
      const c = this.#text[at] as string;
      if (c === '"') return { kind: "string", start, end: at + 1, value };
      if (c === "\\") {
        const next = this.#text[at + 1];
        if (next === undefined) break;
        if (next === "u") {
          const hex = this.#text.slice(at + 2, at + 6);
          if (hex.length < 4) break;
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw new NotJson();
          value += String.fromCharCode(Number.parseInt(hex, 16));
          at += 6;
          continue;
        }
        const escaped = ESCAPES[next];
        if (escaped === undefined) throw new NotJson();
        value += escaped;
        at += 2;
        continue;
      }
      if (c < " ") throw new NotJson(); // raw control characters are not JSON
      value += c;
      at++;
    }
    return { kind: "string", start, end: null, value };
  }

  #scalar(start: number): JsonNode {
    let at = start;
    while (at < this.#text.length && /[-+.0-9a-zA-Z]/.test(this.#text[at] as string)) at++;
    const text = this.#text.slice(start, at);
    if (at === this.#text.length) {
      // It may still grow ("12" -> "123", "tr" -> "true"): complete only if it cannot.
      const prefixOfLiteral = ["true", "false", "null"].some((w) => w.startsWith(text));
      if (prefixOfLiteral || /^-?[0-9.eE+-]*$/.test(text))
        return { kind: "scalar", start, end: null };
      throw new NotJson();
    }
    if (!/^(true|false|null|-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)$/.test(text)) {
      throw new NotJson();
    }
    return { kind: "scalar", start, end: at };
  }
}

/** The value of `key` in an object node, if present. */
export function entryOf(node: JsonNode, ...keys: string[]): JsonEntry | undefined {
  return node.kind === "object"
    ? node.entries.find((e) => e.key !== null && keys.includes(e.key))
    : undefined;
}
