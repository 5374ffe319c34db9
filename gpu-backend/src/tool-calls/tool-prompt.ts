// A conversation with tools as the chat template takes it. A template that takes `tools`
// (Llama 3.x, Qwen 2.5, Hermes, Mistral) gets them and the messages as HF's
// apply_chat_template gives them: an assistant's `tool_calls` with arguments as objects,
// `tool` messages with their `tool_call_id`. Any other template gets the default prompt
// block instead: the format's system prompt listing the tools, earlier calls written into
// the assistant turns as the model writes them, and tool results as user turns.
import { type CallFormat, renderCalls } from "./call-format.ts";
import type { ToolCall, ToolRequest } from "./tools.ts";

/** A message as the API schema gives it (@lorafleet/api), the fields read here. */
export interface ConversationMessage {
  role: string;
  content: string;
  name?: string | null | undefined;
  tool_calls?: { id: string; function: ToolCall }[] | null | undefined;
  tool_call_id?: string | null | undefined;
  function_call?: ToolCall | null | undefined;
}

/** What a chat template renders. */
export interface TemplateMessage {
  role: string;
  content: string;
  [field: string]: unknown;
}

export interface TemplateInput {
  messages: TemplateMessage[];
  /** the `tools` variable, as HF passes it; null: none */
  tools: Record<string, unknown>[] | null;
}

/**
 * @example templateInput(body.messages, toolRequest, smollm2, false)
 *   // { messages: [{ role: "system", content: "You are an expert in composing functions…" }, …], tools: null }
 */
export function templateInput(
  messages: readonly ConversationMessage[],
  request: ToolRequest | null,
  format: CallFormat,
  templateTakesTools: boolean,
): TemplateInput {
  const conversation = messages.map(withCallsAsToolCalls);
  if (templateTakesTools) {
    return {
      messages: conversation.map(forToolTemplate),
      tools:
        request === null
          ? null
          : request.tools.map((tool) => ({
              type: "function",
              function: {
                name: tool.name,
                description: tool.description ?? "",
                parameters: tool.parameters ?? { type: "object", properties: {} },
              },
            })),
    };
  }
  const rendered = conversation.map((message): TemplateMessage => {
    if (message.role === "tool")
      return { role: "user", content: format.toolResult(message.content) };
    const calls = message.tool_calls ?? [];
    if (calls.length === 0) return { role: message.role, content: message.content };
    const written = renderCalls(
      format,
      calls.map((call) => call.function),
    );
    const content = message.content === "" ? written : `${message.content}\n${written}`;
    return { role: message.role, content };
  });
  if (request === null || request.choice === "none") return { messages: rendered, tools: null };
  const block = format.promptBlock(request.tools);
  const [first, ...rest] = rendered;
  const withBlock =
    first?.role === "system"
      ? [{ ...first, content: `${block}\n\n${first.content}` }, ...rest]
      : [{ role: "system", content: block }, ...rendered];
  return { messages: withBlock, tools: null };
}

/** Legacy forms as today's: `function_call` -> `tool_calls`, role "function" -> "tool". */
function withCallsAsToolCalls(message: ConversationMessage): ConversationMessage {
  if (message.role === "function") {
    return { role: "tool", content: message.content, name: message.name ?? null };
  }
  if (message.function_call != null && (message.tool_calls ?? []).length === 0) {
    return { ...message, tool_calls: [{ id: "call_0", function: message.function_call }] };
  }
  return message;
}

/** HF's message shape: arguments as an object (templates tojson them), nulls left out. */
function forToolTemplate(message: ConversationMessage): TemplateMessage {
  const out: TemplateMessage = { role: message.role, content: message.content };
  if (message.name != null) out.name = message.name;
  if (message.tool_call_id != null) out.tool_call_id = message.tool_call_id;
  if (message.tool_calls != null && message.tool_calls.length > 0) {
    out.tool_calls = message.tool_calls.map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.function.name, arguments: argumentsObject(call.function.arguments) },
    }));
  }
  return out;
}

function argumentsObject(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // the template prints it as the text it is
  }
}
