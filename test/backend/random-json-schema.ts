// Random JSON Schemas (Draft 2020-12) of the kinds applications send, as a fast-check
// arbitrary: nested objects with required and optional properties, arrays with bounds,
// enums and consts, anyOf, bounded integers and numbers, strings bounded by length, a
// format or a pattern. Every string and array is bounded, so a model with random weights
// finishes its answer within a few hundred tokens. And a validator for them: ajv with
// ajv-formats, where date, time and date-time follow RFC 3339's grammar as llguidance
// enforces it (bench/grammar/README.md §4): a second of 60 at any time, and day 29 of
// February in any year, are valid.
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import fc from "fast-check";

export type Schema = Record<string, unknown>;

const FORMATS = ["date", "time", "date-time", "email", "uuid", "ipv4", "ipv6", "hostname", "uri"];
const PATTERNS = ["^[a-z]{2,6}$", "^[A-Z][0-9]{3}$", "^(yes|no|maybe)$", "^[0-9]{3}-[0-9]{2}$"];
const NAMES = ["id", "name", "age", "tags", "city", "when", "score", "kind", "note", "items"];

const leaf: fc.Arbitrary<Schema> = fc.oneof(
  fc
    .tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 3, max: 12 }))
    .map(([minLength, maxLength]) => ({ type: "string", minLength, maxLength })),
  fc.constantFrom(...FORMATS).map((format) => ({ type: "string", format })),
  fc.constantFrom(...PATTERNS).map((pattern) => ({ type: "string", pattern })),
  fc
    .tuple(fc.integer({ min: -50, max: 50 }), fc.integer({ min: 0, max: 1000 }))
    .map(([minimum, span]) => ({ type: "integer", minimum, maximum: minimum + span })),
  fc
    .integer({ min: 1, max: 100 })
    .map((maximum) => ({ type: "number", minimum: 0, maximum, multipleOf: 0.5 })),
  fc.constant({ type: "boolean" }),
  fc.constant({ type: ["string", "null"], maxLength: 6 }),
  fc
    .uniqueArray(fc.constantFrom("red", "green", "blue", 1, 2, true, null), {
      minLength: 1,
      maxLength: 4,
    })
    .map((values) => ({ enum: values })),
  fc.constantFrom("v1", 42, false).map((value) => ({ const: value })),
);

/** Random schemas nested at most `depth` levels deep. */
export function randomSchema(depth = 3): fc.Arbitrary<Schema> {
  const { schema } = fc.letrec<{ schema: Schema; object: Schema; array: Schema; anyOf: Schema }>(
    (tie) => ({
      schema: fc.oneof(
        { depthSize: "small", maxDepth: depth, withCrossShrink: true },
        leaf,
        tie("object"),
        tie("array"),
        tie("anyOf"),
      ),
      object: fc
        .uniqueArray(fc.constantFrom(...NAMES), { minLength: 1, maxLength: 4 })
        .chain((names) =>
          fc
            .record({
              properties: fc.tuple(...names.map(() => tie("schema"))),
              required: fc.subarray(names),
            })
            .map(({ properties, required }) => ({
              type: "object",
              properties: Object.fromEntries(names.map((name, i) => [name, properties[i]])),
              required,
              additionalProperties: false,
            })),
        ),
      array: fc
        .tuple(tie("schema"), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 1, max: 3 }))
        .map(([items, minItems, extra]) => ({
          type: "array",
          items,
          minItems,
          maxItems: minItems + extra,
        })),
      anyOf: fc.tuple(tie("schema"), leaf).map((branches) => ({ anyOf: branches })),
    }),
  );
  return schema;
}

// RFC 3339 (section 5.6) as a grammar: what the schema's `format` asks for, no calendar.
const DATE = "\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])";
const TIME =
  "([01]\\d|2[0-3]):[0-5]\\d:([0-5]\\d|60)(\\.\\d+)?([zZ]|[+-]([01]\\d|2[0-3]):[0-5]\\d)";

/** An ajv that validates what the schemas above describe, RFC 3339 by its grammar. */
export function schemaValidator(): Ajv2020 {
  const ajv = new Ajv2020({ strict: false, allErrors: false });
  addFormats.default(ajv, { mode: "full" });
  ajv.addFormat("date", new RegExp(`^${DATE}$`));
  ajv.addFormat("time", new RegExp(`^${TIME}$`));
  ajv.addFormat("date-time", new RegExp(`^${DATE}[tT ]${TIME}$`));
  return ajv;
}
