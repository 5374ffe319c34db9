import { z } from "zod";
import { unsupported } from "./unsupported-parameter.ts";

/**
 * The stated bounds of what constrains an output (README "Structured outputs"): past
 * them a request is refused here, before any compile. Compile time and per-token work
 * have their own bounds in the executor (grammar_too_complex).
 */
export const structuredOutputLimits = {
  /** one JSON Schema (response_format's, structured_outputs.json, a tool's parameters), as JSON */
  schemaChars: 65_536,
  /** structured_outputs.regex */
  regexChars: 16_384,
  /** structured_outputs.grammar (Lark or GBNF) */
  grammarChars: 65_536,
  /** structured_outputs.choice: entries, and characters per entry */
  choices: 256,
  choiceChars: 1_024,
} as const;

/** A JSON Schema document: an object (or true / false), at most `schemaChars` as JSON. */
export const jsonSchemaDocument = z
  .union([z.record(z.string(), z.unknown()), z.boolean()])
  .refine((schema) => JSON.stringify(schema).length <= structuredOutputLimits.schemaChars, {
    message: `the JSON schema is longer than ${structuredOutputLimits.schemaChars} characters as JSON`,
    params: { code: "schema_too_large" },
  });

const schemaName = z
  .string()
  .regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1-64 letters, digits, underscores or dashes");

/** OpenAI's `response_format`: free text, any JSON object, or JSON following a schema. */
const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: schemaName,
      description: z.string().nullish(),
      /** absent: any JSON value */
      schema: jsonSchemaDocument.nullish(),
      /** the grammar always constrains, so strict or not the output follows the schema */
      strict: z.boolean().nullish(),
    }),
  }),
]);

const textOf = (limit: number, what: string) =>
  z.string().min(1).max(limit, `the ${what} is longer than ${limit} characters`);

/**
 * vLLM's `structured_outputs`: exactly one constraint. Its option flags are accepted and
 * ignored (our JSON never has free whitespace); `structural_tag` is refused by name, as
 * ignoring it would leave the output free.
 */
const structuredOutputs = z
  .object({
    json: z
      .union([z.string(), jsonSchemaDocument])
      .refine(
        (json) => typeof json !== "string" || json.length <= structuredOutputLimits.schemaChars,
        {
          message: `the JSON schema is longer than ${structuredOutputLimits.schemaChars} characters`,
          params: { code: "schema_too_large" },
        },
      )
      .nullish(),
    regex: textOf(structuredOutputLimits.regexChars, "regex").nullish(),
    choice: z
      .array(textOf(structuredOutputLimits.choiceChars, "choice"))
      .min(1)
      .max(structuredOutputLimits.choices)
      .nullish(),
    grammar: textOf(structuredOutputLimits.grammarChars, "grammar").nullish(),
    json_object: z.boolean().nullish(),
    structural_tag: unsupported(() => false, "structured_outputs.structural_tag"),
  })
  .refine(
    (s) =>
      [s.json, s.regex, s.choice, s.grammar, s.json_object || null].filter((v) => v != null)
        .length === 1,
    "give exactly one of json, regex, choice, grammar, json_object",
  );

/** The fields both endpoints take to constrain their output. */
export const structuredOutputFields = {
  response_format: responseFormat.nullish(),
  structured_outputs: structuredOutputs.nullish(),
};

/** What `structuredOutputFields` parse to. */
export interface StructuredOutputBody {
  response_format?: z.infer<typeof responseFormat> | null | undefined;
  structured_outputs?: z.infer<typeof structuredOutputs> | null | undefined;
}

/** A request-level check: one way to constrain the output, not two. */
export function oneOutputConstraint(body: StructuredOutputBody, ctx: z.RefinementCtx): void {
  const format = body.response_format?.type;
  if (body.structured_outputs != null && format !== undefined && format !== "text") {
    ctx.addIssue({
      code: "custom",
      path: ["structured_outputs"],
      message: "give either response_format or structured_outputs, not both",
    });
  }
}
