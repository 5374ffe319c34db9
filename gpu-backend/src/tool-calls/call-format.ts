// How one model family writes tool calls: the text that opens them, how a call and a
// list of calls are laid out, the ids its calls get and the prompt block that teaches the
// format to a model whose chat template does not take tools. The backend's
// --tool-call-parser picks one (as vLLM's flag of that name); formats/ holds them.
import type { ToolCall, ToolDefinition } from "./tools.ts";

/** What a model's output became: its text and its calls, as far as they are known. */
export interface ParsedOutput {
  /** the text outside calls (while streaming: what cannot be the start of a call) */
  content: string;
  calls: PartialCall[];
}

/** A call being read: name once its string is complete, the arguments text final so far. */
export interface PartialCall {
  name: string | null;
  /** JSON text of the arguments object; while streaming, the part that will not change */
  arguments: string;
  complete: boolean;
}

export interface CallFormat {
  /** the --tool-call-parser value */
  readonly name: string;
  /** the text that opens the calls (a special token's text in some tokenizers) */
  readonly trigger: string;
  /** calls only open the answer (Llama 3: the answer is the call), never follow text */
  readonly callsOpenTheAnswer: boolean;
  /** after the trigger, before the first call */
  readonly open: string;
  /** a call's text up to its arguments */
  callPrefix(name: string): string;
  /** after a call's arguments */
  readonly callSuffix: string;
  /** between two calls */
  readonly separator: string;
  /** after the last call */
  readonly close: string;
  /** an id for a call of this family (Mistral's templates want 9 alphanumerics) */
  callId(): string;
  /** The system prompt block for a template that does not take `tools`. */
  promptBlock(tools: readonly ToolDefinition[]): string;
  /** How a tool's result is written back for such a template (a user turn). */
  toolResult(content: string): string;
  /**
   * The text's content and calls: `final` at the end of generation (a malformed call is
   * then content), else while it streams (text that may open a call is held back).
   */
  parse(text: string, final: boolean): ParsedOutput;
}

/** The calls as the model writes them (an assistant turn, for a template without tools). */
export function renderCalls(format: CallFormat, calls: readonly ToolCall[]): string {
  const body = calls
    .map((call) => `${format.callPrefix(call.name)}${call.arguments}${format.callSuffix}`)
    .join(format.separator);
  return `${format.trigger}${format.open}${body}${format.close}`;
}

/** The tools as the default prompt blocks list them: one JSON object per function. */
export function toolsJson(tools: readonly ToolDefinition[]): string {
  return JSON.stringify(
    tools.map((tool) => ({
      type: "function",
      function: {
        name: tool.name,
        description: tool.description ?? "",
        parameters: tool.parameters ?? { type: "object", properties: {} },
      },
    })),
  );
}
