import { describe, expect, it } from "vitest";
import { CALL_FORMATS } from "./formats/index.ts";
import { type ConversationMessage, templateInput } from "./tool-prompt.ts";
import type { ToolRequest } from "./tools.ts";

const tools: ToolRequest = {
  tools: [
    {
      name: "get_weather",
      description: "the weather",
      parameters: { type: "object", properties: { city: { type: "string" } } },
    },
  ],
  choice: "auto",
  parallel: true,
  legacy: false,
};
const loop: ConversationMessage[] = [
  { role: "system", content: "Be brief." },
  { role: "user", content: "Weather in Paris?" },
  {
    role: "assistant",
    content: "",
    tool_calls: [
      { id: "call_1", function: { name: "get_weather", arguments: '{"city": "Paris"}' } },
    ],
  },
  { role: "tool", content: "18 C", tool_call_id: "call_1" },
];

describe("templateInput", () => {
  it("gives a template that takes tools HF's shapes: tools, calls with object arguments", () => {
    const input = templateInput(loop, tools, CALL_FORMATS.hermes, true);
    expect(input.tools).toEqual([
      {
        type: "function",
        function: {
          name: "get_weather",
          description: "the weather",
          parameters: { type: "object", properties: { city: { type: "string" } } },
        },
      },
    ]);
    expect(input.messages[2]).toEqual({
      role: "assistant",
      content: "",
      tool_calls: [
        {
          id: "call_1",
          type: "function",
          function: { name: "get_weather", arguments: { city: "Paris" } },
        },
      ],
    });
    expect(input.messages[3]).toEqual({ role: "tool", content: "18 C", tool_call_id: "call_1" });
  });

  it("teaches any other template the format: a prompt block, calls written out, results as user turns", () => {
    const { smollm2 } = CALL_FORMATS;
    const input = templateInput(loop, tools, smollm2, false);
    expect(input.tools).toBeNull();
    expect(input.messages[0]?.content).toBe(`${smollm2.promptBlock(tools.tools)}\n\nBe brief.`);
    expect(input.messages[2]?.content).toBe(
      '<tool_call>[\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n]</tool_call>',
    );
    expect(input.messages[3]).toEqual({
      role: "user",
      content: "<tool_response>\n18 C\n</tool_response>",
    });
    // without a system message the block becomes one; with tool_choice none, none
    expect(templateInput(loop.slice(1), tools, smollm2, false).messages[0]?.role).toBe("system");
    const none = templateInput(loop.slice(1), { ...tools, choice: "none" }, smollm2, false);
    expect(none.messages[0]).toEqual({ role: "user", content: "Weather in Paris?" });
  });

  it("reads the legacy forms: function_call, role function", () => {
    const legacy: ConversationMessage[] = [
      { role: "assistant", content: "", function_call: { name: "f", arguments: "{}" } },
      { role: "function", name: "f", content: "done" },
    ];
    const input = templateInput(legacy, null, CALL_FORMATS.hermes, true);
    expect(input.messages).toEqual([
      {
        role: "assistant",
        content: "",
        tool_calls: [{ id: "call_0", type: "function", function: { name: "f", arguments: {} } }],
      },
      { role: "tool", content: "done", name: "f" },
    ]);
  });
});
