// SmolLM2-Instruct's function calling (its model card's system prompt, as Ollama's
// template writes it): all calls in one JSON list inside one tag,
//   <tool_call>[
//   {"name": "get_weather", "arguments": {"city": "Paris"}}
//   ]</tool_call>
// and results back as a user turn in <tool_response> tags. Its chat template does not
// take tools, so the prompt block below teaches it the format.
import { type CallFormat, toolsJson } from "../call-format.ts";
import { openAiCallId } from "../call-ids.ts";
import { parseToolCallTags, TOOL_CALL, toolResponse } from "./tool-call-tags.ts";

export const smollm2: CallFormat = {
  name: "smollm2",
  trigger: TOOL_CALL,
  callsOpenTheAnswer: false,
  open: "[\n",
  callPrefix: (name) => `{"name": ${JSON.stringify(name)}, "arguments": `,
  callSuffix: "}",
  separator: ",\n",
  close: "\n]</tool_call>",
  callId: openAiCallId,
  promptBlock: (tools) =>
    "You are an expert in composing functions. You are given a question and a set of possible " +
    "functions.\nBased on the question, you will need to make one or more function/tool calls " +
    "to achieve the purpose.\nIf none of the functions can be used, point it out and refuse to " +
    "answer.\nIf the given question lacks the parameters required by the function, also point " +
    `it out.\nYou have access to the following tools:\n<tools>${toolsJson(tools)}</tools>\n` +
    "The output MUST strictly adhere to the following format, and NO other text MUST be " +
    "included.\nThe example format is as follows. Please make sure the parameter type is " +
    "correct. If no function call is needed, please make the tool calls an empty list '[]'.\n" +
    '<tool_call>[\n{"name": "func_name1", "arguments": {"argument1": "value1", "argument2": ' +
    '"value2"}},\n(more tool calls as required)\n]</tool_call>',
  toolResult: toolResponse,
  parse: parseToolCallTags,
};
