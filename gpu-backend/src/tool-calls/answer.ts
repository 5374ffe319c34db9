// A whole (non-streamed) answer with tools on, as OpenAI returns it: `content` (null when
// the answer is only calls), `tool_calls` with ids (or the legacy `function_call`), and
// finish_reason "tool_calls" ("function_call") when the model stopped after calling.
import type { CallFormat } from "./call-format.ts";
import type { ToolRequest } from "./tools.ts";

export interface ToolAnswer {
  message: Record<string, unknown>;
  finishReason: string;
}

/**
 * A call cut short (max_tokens) or not well formed stays in `content` as the text it is.
 *
 * @example toolAnswer(hermes, request, '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', "stop")
 *   // { message: { role: "assistant", content: null, tool_calls: [{ id, type: "function", function: { name: "f", arguments: "{}" } }] }, finishReason: "tool_calls" }
 */
export function toolAnswer(
  format: CallFormat,
  request: ToolRequest,
  text: string,
  finishReason: string,
): ToolAnswer {
  if (request.choice === "none")
    return { message: { role: "assistant", content: text }, finishReason };
  const parsed = format.parse(text, true);
  const calls = parsed.calls.flatMap((call) =>
    call.name === null ? [] : [{ name: call.name, arguments: call.arguments }],
  );
  if (calls.length === 0) return { message: { role: "assistant", content: text }, finishReason };
  const content = parsed.content.trim() === "" ? null : parsed.content;
  const stopped = finishReason === "stop";
  if (request.legacy) {
    return {
      message: { role: "assistant", content, function_call: calls[0] },
      finishReason: stopped ? "function_call" : finishReason,
    };
  }
  return {
    message: {
      role: "assistant",
      content,
      tool_calls: calls.map((fn) => ({ id: format.callId(), type: "function", function: fn })),
    },
    finishReason: stopped ? "tool_calls" : finishReason,
  };
}
