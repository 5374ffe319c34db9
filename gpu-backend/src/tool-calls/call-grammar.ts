// The grammar (llguidance's Lark) that makes a model's calls parse: a call's name is one
// of the offered tools and its arguments follow that tool's schema.
//
//   required, a named function: nothing but calls   start: TRIGGER OPEN calls CLOSE
//   auto: free text until the model opens a call (a lazy trigger), then only calls
//                                                   start: TEXT | trig OPEN calls CLOSE
//   auto where calls open the answer (Llama 3): text that does not start like a call,
//   or calls                                        start: TEXT_NOT_A_CALL | WS block
//   auto with response_format JSON: that JSON, or calls
//
// Each tool's call is one line (`call_<i>: PREFIX %json {...} SUFFIX`), so a compile error
// llguidance reports "at LINE(COL)" names the tool (`toolAtLine`).
import type { GrammarSpec } from "../protocol/messages.ts";
import type { CallFormat } from "./call-format.ts";
import { callableTools, type JsonSchema, type ToolRequest } from "./tools.ts";

/**
 * JSON inside the calls as the executor writes all JSON (grammar/limits.py JSON_OPTIONS):
 * no free whitespace, json.dumps' separators; set on each schema, over what it says.
 */
const JSON_OPTIONS = { whitespace_flexible: false, item_separator: ", ", key_separator: ": " };

export interface CallGrammar {
  spec: GrammarSpec;
  /** the grammar's line (1-based) of each tool's call -> that tool's index in the request */
  toolAtLine: Map<number, number>;
}

/**
 * The grammar of a request's calls; null when it allows none (tool_choice "none").
 * `specialId` gives the token id of a trigger that is a special token of the tokenizer
 * (the grammar then asks for that token: its text cannot be generated as text).
 *
 * @example callGrammar(hermes, { tools, choice: "required", parallel: true, legacy: false }, () => null, null)
 */
export function callGrammar(
  format: CallFormat,
  request: ToolRequest,
  specialId: (text: string) => number | null,
  contentSchema: JsonSchema | null,
): CallGrammar | null {
  const callable = callableTools(request);
  if (callable.length === 0) return null;
  const id = specialId(format.trigger);
  const trigger = id === null ? literal(format.trigger) : `<[${id}]>`;
  const block = `${trigger} ${literal(format.open)} calls ${literal(format.close)}`;
  const lines = ["%llguidance {}"];
  if (request.choice !== "auto") lines.push(`start: ${block}`);
  else if (contentSchema !== null) lines.push(`start: ${jsonRule(contentSchema)} | ${block}`);
  else if (format.callsOpenTheAnswer) {
    // The answer is the call, or text that does not start with the call's first
    // character: what begins like a call is a call (after whitespace too).
    const first = format.trigger[0] as string;
    const notCall = `[^${regexClass(first)} \\t\\n\\r]`;
    lines.push(
      `start: TEXT | WS ${block}`,
      `TEXT: /[ \\t\\n\\r]*(${notCall}(.|\\n)*)?/`,
      "WS: /[ \\t\\n\\r]*/",
    );
  } else if (id !== null) lines.push(`start: TEXT | TEXT ${block}`, FREE_TEXT);
  else {
    // Lazy: the free text ends at the trigger's first occurrence, so a call once opened
    // is a call (a special-token trigger cannot occur in text at all).
    const rest = `${literal(format.open)} calls ${literal(format.close)}`;
    lines.push(`start: TEXT | trig ${rest}`, FREE_TEXT, `trig[lazy]: TEXT ${trigger}`);
  }
  lines.push(
    request.parallel ? `calls: call (${literal(format.separator)} call)*` : "calls: call",
    `call: ${callable.map((_, i) => `call_${i}`).join(" | ")}`,
  );
  const toolAtLine = new Map<number, number>();
  for (const [i, tool] of callable.entries()) {
    toolAtLine.set(lines.length + 1, request.tools.indexOf(tool));
    const prefix = literal(format.callPrefix(tool.name));
    lines.push(
      `call_${i}: ${prefix} ${jsonRule(argumentsSchema(tool.parameters))} ${literal(format.callSuffix)}`,
    );
  }
  return { spec: { kind: "lark", source: `${lines.join("\n")}\n` }, toolAtLine };
}

const FREE_TEXT = "TEXT: /(.|\\n)*/";

/** A character as it goes into a regex character class. */
function regexClass(char: string): string {
  return /[\]\\^\-[/]/.test(char) ? `\\${char}` : char;
}

/** A Lark string literal (JSON's string syntax), or nothing for the empty string. */
function literal(text: string): string {
  return text === "" ? "" : JSON.stringify(text);
}

function jsonRule(schema: JsonSchema): string {
  const document = typeof schema === "boolean" ? (schema ? {} : { not: {} }) : schema;
  return `%json ${JSON.stringify({ ...document, "x-guidance": JSON_OPTIONS })}`;
}

/** A tool without parameters takes the empty object. */
function argumentsSchema(parameters: JsonSchema | null): JsonSchema {
  return parameters ?? { type: "object", properties: {}, additionalProperties: false };
}
