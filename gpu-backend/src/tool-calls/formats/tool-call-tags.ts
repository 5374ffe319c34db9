// The tags Hermes and SmolLM2 share: calls inside <tool_call>...</tool_call> (one call in
// Hermes', a list in SmolLM2's: the parser reads both), results back in <tool_response>.
import type { ParsedOutput } from "../call-format.ts";
import { parseTagged } from "../call-parser.ts";

export const TOOL_CALL = "<tool_call>";

export function parseToolCallTags(text: string, final: boolean): ParsedOutput {
  return parseTagged(text, final, {
    trigger: TOOL_CALL,
    closeTag: "</tool_call>",
    argumentKeys: ["arguments"],
  });
}

export const toolResponse = (content: string) => `<tool_response>\n${content}\n</tool_response>`;
