// Mistral 7B v0.3 / Nemo / Small (vLLM's `mistral` parser): [TOOL_CALLS] (a control token
// in their tokenizers) and then one JSON list of calls,
//   [TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]
// with 9-character alphanumeric call ids, which their templates insist on.
import { type CallFormat, toolsJson } from "../call-format.ts";
import { mistralCallId } from "../call-ids.ts";
import { parseTagged } from "../call-parser.ts";

export const mistral: CallFormat = {
  name: "mistral",
  trigger: "[TOOL_CALLS]",
  callsOpenTheAnswer: false,
  open: "[",
  callPrefix: (name) => `{"name": ${JSON.stringify(name)}, "arguments": `,
  callSuffix: "}",
  separator: ", ",
  close: "]",
  callId: mistralCallId,
  promptBlock: (tools) =>
    `You can call these functions: ${toolsJson(tools)}\n` +
    "To call functions, answer [TOOL_CALLS] followed by a JSON list of calls, each " +
    '{"name": <function-name>, "arguments": <args-dict>}.',
  toolResult: (content) => `[TOOL_RESULTS]${content}[/TOOL_RESULTS]`,
  parse: (text, final) =>
    parseTagged(text, final, {
      trigger: "[TOOL_CALLS]",
      closeTag: "",
      argumentKeys: ["arguments"],
    }),
};
