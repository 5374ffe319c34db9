// The executor's refusal of a grammar (llguidance's words) as a 400 a client can act on:
// which parameter, which tool, where in the schema.
//
//   Unimplemented keys: ["uniqueItems"]
//     -> response_format.json_schema.schema: at /properties/tags: Unimplemented keys:
//        ["uniqueItems"] (llguidance cannot enforce them)
//   at 5(9): failed to compile JSON schema: Invalid type: strng   (a tool's line)
//     -> tools[1].function.parameters: Invalid type: strng
import { StructuredOutputError } from "./structured-output-error.ts";

/** What a grammar was made of, to word its refusal. */
export interface GrammarOrigin {
  /** the parameter a refusal names when nothing narrower is known */
  param: string;
  /** the JSON Schema it compiles, to locate keywords in */
  schema: unknown;
  /** for a tool grammar: the grammar line of each tool's call -> its index and schema */
  tools?: { atLine: Map<number, number>; schemas: unknown[]; param: (index: number) => string };
}

/**
 * @example grammarRefusal("Unimplemented keys: [\"not\"]", "grammar_invalid", { param: "response_format.json_schema.schema", schema })
 */
export function grammarRefusal(
  detail: string,
  code: "grammar_invalid" | "grammar_too_complex",
  origin: GrammarOrigin,
): StructuredOutputError {
  let param = origin.param;
  let schema = origin.schema;
  let message = detail;
  const located = /^at (\d+)\(\d+\): (?:failed to compile JSON schema: )?/.exec(detail);
  const tool = located === null ? undefined : origin.tools?.atLine.get(Number(located[1]));
  if (located !== null && tool !== undefined && origin.tools !== undefined) {
    param = origin.tools.param(tool);
    schema = origin.tools.schemas[tool];
    // Our own grammar's listing means nothing to the client: the first line says it.
    message = (detail.slice(located[0].length).split("\n")[0] ?? "").trim();
  }
  const keys = /Unimplemented keys: (\[[^\]]*\])/.exec(message);
  if (keys !== null) {
    const names = JSON.parse(keys[1] as string) as string[];
    const path = pathOfKeyword(schema, names);
    message = `${path === null ? "" : `at ${path}: `}${message} (llguidance cannot enforce them)`;
  }
  return new StructuredOutputError(`${param}: ${message}`, param, code);
}

/** The JSON pointer of the first (sub)schema that has one of `keywords`, depth first. */
export function pathOfKeyword(schema: unknown, keywords: string[], at = ""): string | null {
  if (schema === null || typeof schema !== "object") return null;
  if (!Array.isArray(schema) && keywords.some((k) => Object.hasOwn(schema, k))) return at || "/";
  for (const [key, value] of Object.entries(schema)) {
    const found = pathOfKeyword(
      value,
      keywords,
      `${at}/${key.replaceAll("~", "~0").replaceAll("/", "~1")}`,
    );
    if (found !== null) return found;
  }
  return null;
}
