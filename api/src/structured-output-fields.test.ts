import { describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema } from "./chat-completion-request.ts";
import { CompletionRequestSchema } from "./completion-request.ts";
import { structuredOutputLimits } from "./structured-output-fields.ts";
import { chatBody, chatIssue } from "./testing.ts";

const schema = { type: "object", properties: { a: { type: "integer" } }, required: ["a"] };

describe("structured output fields", () => {
  it("take OpenAI's response_format and vLLM's structured_outputs, on both endpoints", () => {
    const formats = [
      { type: "text" },
      { type: "json_object" },
      { type: "json_schema", json_schema: { name: "answer", schema, strict: true } },
      { type: "json_schema", json_schema: { name: "any" } },
    ];
    for (const response_format of formats) {
      expect(
        ChatCompletionRequestSchema.parse(chatBody({ response_format })).response_format,
      ).toEqual(response_format);
    }
    const outputs = [
      { json: schema },
      { json: JSON.stringify(schema) },
      { regex: "[0-9]{3}" },
      { choice: ["yes", "no"] },
      { grammar: 'root ::= "a" | "b"' },
      { json_object: true },
    ];
    for (const structured_outputs of outputs) {
      expect(
        CompletionRequestSchema.parse({ model: "m", prompt: "p", structured_outputs })
          .structured_outputs,
      ).toEqual(structured_outputs);
    }
    // vLLM's option flags pass (our JSON has no free whitespace anyway)
    const flagged = { regex: "x", disable_any_whitespace: true };
    expect(
      CompletionRequestSchema.parse({ model: "m", prompt: "p", structured_outputs: flagged })
        .structured_outputs,
    ).toEqual({ regex: "x" });
  });

  it("refuse what would leave the output free or ambiguous, naming the field", () => {
    expect(chatIssue({ response_format: { type: "xml" } }).param).toBe("response_format.type");
    expect(
      chatIssue({ response_format: { type: "json_schema", json_schema: { name: "a b" } } }).param,
    ).toBe("response_format.json_schema.name");
    expect(
      chatIssue({ response_format: { type: "json_schema", json_schema: { name: "a", schema: 3 } } })
        .param,
    ).toBe("response_format.json_schema.schema");
    expect(chatIssue({ structured_outputs: { regex: "a", choice: ["b"] } }).message).toBe(
      "structured_outputs: give exactly one of json, regex, choice, grammar, json_object",
    );
    expect(chatIssue({ structured_outputs: {} }).param).toBe("structured_outputs");
    expect(chatIssue({ structured_outputs: { structural_tag: {} } })).toMatchObject({
      param: "structured_outputs.structural_tag",
      code: "unsupported_parameter",
    });
    expect(
      chatIssue({ response_format: { type: "json_object" }, structured_outputs: { regex: "a" } })
        .message,
    ).toBe("structured_outputs: give either response_format or structured_outputs, not both");
  });

  it("refuse schemas, regexes, grammars and choices past the stated sizes", () => {
    const big = {
      type: "object",
      description: "x".repeat(structuredOutputLimits.schemaChars),
    };
    expect(
      chatIssue({
        response_format: { type: "json_schema", json_schema: { name: "a", schema: big } },
      }),
    ).toMatchObject({ param: "response_format.json_schema.schema", code: "schema_too_large" });
    expect(chatIssue({ structured_outputs: { json: JSON.stringify(big) } }).code).toBe(
      "schema_too_large",
    );
    expect(
      chatIssue({
        structured_outputs: { regex: "a".repeat(structuredOutputLimits.regexChars + 1) },
      }).param,
    ).toBe("structured_outputs.regex");
    const choices = Array.from({ length: structuredOutputLimits.choices + 1 }, (_, i) => `${i}`);
    expect(chatIssue({ structured_outputs: { choice: choices } }).param).toBe(
      "structured_outputs.choice",
    );
  });
});
