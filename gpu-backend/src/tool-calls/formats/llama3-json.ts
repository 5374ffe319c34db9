// Llama 3.1 / 3.2 / 3.3 JSON tool calling (vLLM's `llama3_json` parser): the answer is
// the call, {"name": "get_weather", "parameters": {"city": "Paris"}}, several separated
// by "; ", maybe after <|python_tag|>. Their templates take `tools`.
import { type CallFormat, toolsJson } from "../call-format.ts";
import { openAiCallId } from "../call-ids.ts";
import { parseLeading } from "../call-parser.ts";

export const llama3Json: CallFormat = {
  name: "llama3_json",
  trigger: '{"name": ',
  callsOpenTheAnswer: true,
  open: "",
  callPrefix: (name) => `${JSON.stringify(name)}, "parameters": `,
  callSuffix: "}",
  separator: '; {"name": ',
  close: "",
  callId: openAiCallId,
  promptBlock: (tools) =>
    "Given the following functions, please respond with a JSON for a function call with its " +
    "proper arguments that best answers the given prompt.\n\n" +
    'Respond in the format {"name": function name, "parameters": dictionary of argument name ' +
    "and its value}. Do not use variables.\n\n" +
    toolsJson(tools),
  toolResult: (content) => content,
  parse: (text, final) =>
    parseLeading(text, final, {
      prefix: "<|python_tag|>",
      argumentKeys: ["parameters", "arguments"],
    }),
};
