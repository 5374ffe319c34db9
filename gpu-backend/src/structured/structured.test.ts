import { describe, expect, it } from "vitest";
import { grammarRefusal, pathOfKeyword } from "./grammar-errors.ts";
import { outputConstraint } from "./output-grammar.ts";
import { checkSchema } from "./schema-check.ts";
import { StructuredOutputError } from "./structured-output-error.ts";

const schema = { type: "object", properties: { a: { type: "integer" } } };

describe("outputConstraint", () => {
  it("turns each way of asking into the grammar the executor compiles", () => {
    expect(outputConstraint({})).toBeNull();
    expect(outputConstraint({ response_format: { type: "text" } })).toBeNull();
    expect(outputConstraint({ response_format: { type: "json_object" } })?.spec).toEqual({
      kind: "json_schema",
      source: '{"type":"object"}',
    });
    expect(
      outputConstraint({
        response_format: { type: "json_schema", json_schema: { name: "a", schema } },
      }),
    ).toEqual({
      spec: { kind: "json_schema", source: JSON.stringify(schema) },
      param: "response_format.json_schema.schema",
      schema,
    });
    expect(
      outputConstraint({ response_format: { type: "json_schema", json_schema: { name: "a" } } })
        ?.spec.source,
    ).toBe("{}");
    expect(
      outputConstraint({ structured_outputs: { json: JSON.stringify(schema) } })?.schema,
    ).toEqual(schema);
    expect(outputConstraint({ structured_outputs: { choice: ["a", "b"] } })?.spec).toEqual({
      kind: "choice",
      source: '["a","b"]',
    });
    expect(outputConstraint({ structured_outputs: { grammar: "root ::= 'a'" } })?.param).toBe(
      "structured_outputs.grammar",
    );
  });

  it("refuses a schema that is not one, naming the parameter and the path", () => {
    const bad = { type: "object", properties: { age: { type: "strng" } } };
    expect(() =>
      outputConstraint({
        response_format: { type: "json_schema", json_schema: { name: "a", schema: bad } },
      }),
    ).toThrow(
      "response_format.json_schema.schema: not a valid JSON Schema at /properties/age/type: must be equal to one of the allowed values",
    );
    expect(() => outputConstraint({ structured_outputs: { json: "{nope" } })).toThrow(
      /structured_outputs.json: not JSON/,
    );
    expect(() => outputConstraint({ structured_outputs: { json: "[1]" } })).toThrow(
      "structured_outputs.json: a JSON Schema is an object",
    );
  });
});

describe("checkSchema", () => {
  it("reads draft 2020-12 and draft-07 documents; an unknown $schema is left to the engine", () => {
    expect(() =>
      checkSchema({ ...schema, $schema: "http://json-schema.org/draft-07/schema#" }, "p"),
    ).not.toThrow();
    expect(() => checkSchema({ minimum: "x" }, "p")).toThrow(StructuredOutputError);
    expect(() =>
      checkSchema({ $schema: "https://example.com/mine", type: "object" }, "p"),
    ).not.toThrow();
    expect(() => checkSchema(true, "p")).not.toThrow();
  });
});

describe("grammarRefusal", () => {
  it("locates a keyword llguidance cannot enforce", () => {
    const tagged = { type: "object", properties: { tags: { type: "array", uniqueItems: true } } };
    const error = grammarRefusal('Unimplemented keys: ["uniqueItems"]', "grammar_invalid", {
      param: "response_format.json_schema.schema",
      schema: tagged,
    });
    expect([error.message, error.param, error.code]).toEqual([
      'response_format.json_schema.schema: at /properties/tags: Unimplemented keys: ["uniqueItems"] (llguidance cannot enforce them)',
      "response_format.json_schema.schema",
      "grammar_invalid",
    ]);
  });

  it("names the tool of a tool grammar's line, without the grammar's listing", () => {
    const detail =
      'at 7(9): failed to compile JSON schema: Unimplemented keys: ["not"]\n   7 | call_1: ...\n     ^\n';
    const schemas = [null, { properties: { x: { not: {} } } }];
    const error = grammarRefusal(detail, "grammar_invalid", {
      param: "tools",
      schema: null,
      tools: {
        atLine: new Map([[7, 1]]),
        schemas,
        param: (i) => `tools[${i}].function.parameters`,
      },
    });
    expect(error.message).toBe(
      'tools[1].function.parameters: at /properties/x: Unimplemented keys: ["not"] (llguidance cannot enforce them)',
    );
    expect(error.param).toBe("tools[1].function.parameters");
  });

  it("finds paths depth first and escapes them as JSON pointers", () => {
    expect(pathOfKeyword({ a: [{ "b/c": { not: 1 } }] }, ["not"])).toBe("/a/0/b~1c");
    expect(pathOfKeyword({ not: 1 }, ["not"])).toBe("/");
    expect(pathOfKeyword({ a: 1 }, ["not"])).toBeNull();
  });
});
