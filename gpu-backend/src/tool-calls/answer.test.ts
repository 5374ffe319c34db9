import { describe, expect, it } from "vitest";
import { toolAnswer } from "./answer.ts";
import { CALL_FORMATS } from "./formats/index.ts";
import type { ToolRequest } from "./tools.ts";

const request = (over: Partial<ToolRequest> = {}): ToolRequest => ({
  tools: [{ name: "f", description: null, parameters: null }],
  choice: "auto",
  parallel: true,
  legacy: false,
  ...over,
});
const { hermes } = CALL_FORMATS;
const call = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>';

describe("toolAnswer", () => {
  it("answers calls with ids, content null, finish_reason tool_calls", () => {
    const { message, finishReason } = toolAnswer(hermes, request(), call, "stop");
    expect(finishReason).toBe("tool_calls");
    expect(message).toMatchObject({
      role: "assistant",
      content: null,
      tool_calls: [{ type: "function", function: { name: "f", arguments: '{"a": 1}' } }],
    });
    expect((message.tool_calls as { id: string }[])[0]?.id).toMatch(/^call_/);
  });

  it("keeps text beside calls, and text alone as it is", () => {
    expect(toolAnswer(hermes, request(), `Let me see.\n${call}`, "stop").message.content).toBe(
      "Let me see.\n",
    );
    expect(toolAnswer(hermes, request(), "Paris is sunny.", "stop")).toEqual({
      message: { role: "assistant", content: "Paris is sunny." },
      finishReason: "stop",
    });
  });

  it("leaves a call cut by max_tokens in content with finish_reason length", () => {
    const cut = call.slice(0, 30);
    expect(toolAnswer(hermes, request(), cut, "length")).toEqual({
      message: { role: "assistant", content: cut },
      finishReason: "length",
    });
  });

  it("answers the legacy functions with function_call and finish_reason function_call", () => {
    expect(toolAnswer(hermes, request({ legacy: true }), call, "stop")).toEqual({
      message: {
        role: "assistant",
        content: null,
        function_call: { name: "f", arguments: '{"a": 1}' },
      },
      finishReason: "function_call",
    });
  });

  it("reads no calls when tool_choice is none", () => {
    expect(toolAnswer(hermes, request({ choice: "none" }), call, "stop").message.content).toBe(
      call,
    );
  });
});
