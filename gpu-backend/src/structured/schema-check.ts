// A JSON Schema document checked against its draft's meta-schema (ajv), so a schema that
// is not one is refused naming where: `properties/age/type: must be equal to one of the
// allowed values`. What a valid schema asks of the output is llguidance's to enforce or
// refuse, in the executor; this only reads the document.
import { Ajv } from "ajv";
import { Ajv2020 } from "ajv/dist/2020.js";
import { StructuredOutputError } from "./structured-output-error.ts";

// Draft 2020-12 unless the schema names an older draft ($schema), as zod and pydantic
// output may (draft-07). Neither compiles anything here: meta-schema validation only.
const drafts = {
  modern: new Ajv2020({ strict: false, validateFormats: false, allErrors: false }),
  draft07: new Ajv({ strict: false, validateFormats: false, allErrors: false }),
};

/**
 * Throws StructuredOutputError (invalid_schema) naming `param` and the path in the schema.
 *
 * @example checkSchema({ type: "strng" }, "response_format.json_schema.schema")
 *   // throws: "response_format.json_schema.schema: /type must be equal to one of the allowed values"
 */
export function checkSchema(schema: unknown, param: string): void {
  if (typeof schema === "boolean") return;
  const declared = (schema as { $schema?: unknown }).$schema;
  const ajv =
    typeof declared === "string" && /draft-0[4-7]/.test(declared) ? drafts.draft07 : drafts.modern;
  let valid: boolean;
  try {
    valid = ajv.validateSchema(schema as object) as boolean;
  } catch (error) {
    // A $schema ajv does not know: the document is not checked here, the engine reads it.
    if (/no schema with key or ref/.test((error as Error).message)) return;
    throw error;
  }
  if (valid) return;
  const first = ajv.errors?.[0];
  const where = first?.instancePath || "/";
  throw new StructuredOutputError(
    `${param}: not a valid JSON Schema at ${where}: ${first?.message ?? "invalid"}`,
    param,
    "invalid_schema",
  );
}
