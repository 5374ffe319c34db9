import { describe, expect, it } from "vitest";
import { ChatCompletionRequestSchema } from "./chat-completion-request.ts";
import { chatBody, chatIssue } from "./testing.ts";
import { toolLimits } from "./tool-fields.ts";

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "the weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
  },
};

describe("tool fields", () => {
  it("take tools with every tool_choice, parallel_tool_calls and the legacy functions", () => {
    for (const tool_choice of [
      "none",
      "auto",
      "required",
      { type: "function", function: { name: "get_weather" } },
    ]) {
      const parsed = ChatCompletionRequestSchema.parse(
        chatBody({ tools: [weather], tool_choice, parallel_tool_calls: false }),
      );
      expect(parsed.tool_choice).toEqual(tool_choice);
      expect(parsed.tools?.[0]?.function.parameters).toEqual(weather.function.parameters);
    }
    const legacy = ChatCompletionRequestSchema.parse(
      chatBody({ functions: [weather.function], function_call: { name: "get_weather" } }),
    );
    expect(legacy.functions?.[0]?.name).toBe("get_weather");
  });

  it("take an agent loop's messages: assistant tool_calls (content null), tool results", () => {
    const parsed = ChatCompletionRequestSchema.parse(
      chatBody({
        tools: [weather],
        messages: [
          { role: "user", content: "weather in Paris?" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "get_weather", arguments: '{"city":"Paris"}' },
              },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: "18 C" },
          { role: "function", name: "get_weather", content: "18 C" },
        ],
      }),
    );
    expect(parsed.messages[1]).toMatchObject({ content: "", tool_calls: [{ id: "call_1" }] });
    expect(parsed.messages[2]).toMatchObject({ role: "tool", tool_call_id: "call_1" });
  });

  it("refuse a tool_choice naming a function the request does not offer", () => {
    expect(
      chatIssue({ tools: [weather], tool_choice: { type: "function", function: { name: "x" } } }),
    ).toEqual({
      message: 'tool_choice: names the function "x", which is not among the tools',
      param: "tool_choice",
      code: "unknown_tool",
    });
    expect(chatIssue({ functions: [weather.function], function_call: { name: "x" } }).param).toBe(
      "function_call",
    );
    expect(chatIssue({ tool_choice: "required" }).message).toBe(
      "tool_choice: asks for a tool call, but the request offers no tools",
    );
  });

  it("refuse malformed tools, both forms at once, and lists past the stated bounds", () => {
    expect(chatIssue({ tools: [{ type: "function", function: { name: "a b" } }] }).param).toBe(
      "tools[0].function.name",
    );
    expect(chatIssue({ tools: [{ type: "retrieval" }] }).param).toBe("tools[0].type");
    expect(chatIssue({ tools: [weather], functions: [weather.function] }).param).toBe("functions");
    const many = Array.from({ length: toolLimits.tools + 1 }, (_, i) => ({
      type: "function",
      function: { name: `f${i}` },
    }));
    expect(chatIssue({ tools: many }).message).toBe(`tools: at most ${toolLimits.tools} tools`);
    const long = (i: number) => ({
      type: "function",
      function: { name: `f${i}`, description: "x".repeat(60_000) },
    });
    expect(chatIssue({ tools: [0, 1, 2, 3, 4].map(long) })).toMatchObject({
      param: "tools",
      code: "tools_too_large",
    });
  });
});
