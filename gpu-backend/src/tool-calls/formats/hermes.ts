// Hermes 2 Pro and Qwen 2.5 / 3 (vLLM's `hermes` parser): each call its own block,
//   <tool_call>
//   {"name": "get_weather", "arguments": {"city": "Paris"}}
//   </tool_call>
// after optional text. Their templates take `tools` and render calls and results so.
import { type CallFormat, toolsJson } from "../call-format.ts";
import { openAiCallId } from "../call-ids.ts";
import { parseToolCallTags, TOOL_CALL, toolResponse } from "./tool-call-tags.ts";

export const hermes: CallFormat = {
  name: "hermes",
  trigger: TOOL_CALL,
  callsOpenTheAnswer: false,
  open: "",
  callPrefix: (name) => `\n{"name": ${JSON.stringify(name)}, "arguments": `,
  callSuffix: "}\n</tool_call>",
  separator: "\n<tool_call>",
  close: "",
  callId: openAiCallId,
  promptBlock: (tools) =>
    "You are a function calling AI model. You are provided with function signatures within " +
    "<tools></tools> XML tags. You may call one or more functions to assist with the user " +
    "query. Don't make assumptions about what values to plug into functions. Here are the " +
    `available tools: <tools>${toolsJson(tools)}</tools>\n` +
    "For each function call return a json object with function name and arguments within " +
    "<tool_call></tool_call> XML tags as follows:\n" +
    '<tool_call>\n{"name": <function-name>, "arguments": <args-dict>}\n</tool_call>',
  toolResult: toolResponse,
  parse: parseToolCallTags,
};
