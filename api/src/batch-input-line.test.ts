import { describe, expect, it } from "vitest";
import { batchInputLineSchema } from "./batch-input-line.ts";
import { requestIssue } from "./request-issue.ts";

const chatLine = batchInputLineSchema("/v1/chat/completions");
const line = (extra: object, body: object = {}) => ({
  custom_id: "a",
  method: "POST",
  url: "/v1/chat/completions",
  body: { model: "m", messages: [{ role: "user", content: "hi" }], ...body },
  ...extra,
});
const issueOf = (value: unknown) => {
  const result = chatLine.safeParse(value);
  if (result.success) throw new Error("accepted");
  return requestIssue(result.error);
};

describe("batchInputLineSchema", () => {
  it("takes a line whose body its endpoint takes", () => {
    expect(chatLine.parse(line({}, { stream: false })).body.model).toBe("m");
  });

  it("refuses a body as the endpoint would, naming the field under `body`", () => {
    expect(issueOf(line({}, { messages: [] })).param).toBe("body.messages");
    expect(issueOf(line({}, { tools: [{ type: "function" }] })).param).toBe(
      "body.tools[0].function",
    );
    expect(
      issueOf(line({}, { tool_choice: { type: "function", function: { name: "nope" } } })),
    ).toMatchObject({ param: "body.tool_choice", code: "unknown_tool" });
  });

  it("takes structured outputs and tools in a batch line, as the endpoint does", () => {
    const body = {
      response_format: {
        type: "json_schema",
        json_schema: { name: "a", schema: { type: "object" } },
      },
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
      tool_choice: "auto",
    };
    expect(chatLine.parse(line({}, body)).body).toMatchObject({
      tools: [{ function: { name: "f" } }],
      response_format: { type: "json_schema" },
    });
  });

  it("refuses streaming, another endpoint, another method and an empty custom_id", () => {
    expect(issueOf(line({}, { stream: true })).message).toBe(
      "body.stream: streaming is not available in batches",
    );
    expect(issueOf(line({ url: "/v1/completions" })).message).toBe(
      "url: must be the batch's endpoint /v1/chat/completions",
    );
    expect(issueOf(line({ method: "GET" })).message).toBe('method: must be "POST"');
    expect(issueOf(line({ custom_id: "" })).param).toBe("custom_id");
  });
});
