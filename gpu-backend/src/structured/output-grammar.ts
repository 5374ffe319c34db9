// What a request's response_format / structured_outputs asks of its output, as the
// grammar the executor compiles (PROTOCOL.md `compile_grammar` kinds).
//
//   response_format {type: json_object}              json_schema {"type": "object"}
//   response_format {type: json_schema, json_schema}  json_schema (the schema; none: any JSON)
//   structured_outputs {json | json_object}          json_schema
//   structured_outputs {regex | choice | grammar}     regex | choice | grammar (Lark or GBNF)
import type { StructuredOutputBody } from "@lorafleet/api";
import type { GrammarSpec } from "../protocol/messages.ts";
import { checkSchema } from "./schema-check.ts";
import { StructuredOutputError } from "./structured-output-error.ts";

export interface OutputConstraint {
  spec: GrammarSpec;
  /** the parameter that asked for it (what a refusal names) */
  param: string;
  /** the JSON Schema, for kind json_schema */
  schema: Record<string, unknown> | boolean | null;
}

const ANY_OBJECT = { type: "object" };

/**
 * null when the output is free text. Throws StructuredOutputError for a schema that is not
 * a JSON Schema (named by its path).
 *
 * @example outputConstraint({ structured_outputs: { regex: "[0-9]+" } })
 *   // { spec: { kind: "regex", source: "[0-9]+" }, param: "structured_outputs.regex", schema: null }
 */
export function outputConstraint(body: StructuredOutputBody): OutputConstraint | null {
  const format = body.response_format;
  if (format?.type === "json_object") return json(ANY_OBJECT, "response_format");
  if (format?.type === "json_schema") {
    return json(format.json_schema.schema ?? {}, "response_format.json_schema.schema");
  }
  const outputs = body.structured_outputs;
  if (outputs == null) return null;
  if (outputs.json != null) {
    const param = "structured_outputs.json";
    return json(
      typeof outputs.json === "string" ? parsed(outputs.json, param) : outputs.json,
      param,
    );
  }
  if (outputs.json_object) return json(ANY_OBJECT, "structured_outputs.json_object");
  if (outputs.regex != null) return other("regex", outputs.regex);
  if (outputs.choice != null) return other("choice", JSON.stringify(outputs.choice));
  if (outputs.grammar != null) return other("grammar", outputs.grammar);
  return null;
}

function json(schema: Record<string, unknown> | boolean, param: string): OutputConstraint {
  checkSchema(schema, param);
  return { spec: { kind: "json_schema", source: JSON.stringify(schema) }, param, schema };
}

function other(kind: "regex" | "choice" | "grammar", source: string): OutputConstraint {
  return { spec: { kind, source }, param: `structured_outputs.${kind}`, schema: null };
}

function parsed(text: string, param: string): Record<string, unknown> | boolean {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new StructuredOutputError(
      `${param}: not JSON: ${(error as Error).message}`,
      param,
      "invalid_schema",
    );
  }
  if (
    typeof value !== "boolean" &&
    (typeof value !== "object" || value === null || Array.isArray(value))
  ) {
    throw new StructuredOutputError(
      `${param}: a JSON Schema is an object`,
      param,
      "invalid_schema",
    );
  }
  return value as Record<string, unknown> | boolean;
}
