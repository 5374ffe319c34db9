import type { GatewayClient } from "./gateway-client.ts";
import { GatewayError } from "./gateway-error.ts";
import { sseData } from "./sse.ts";

/** A call the model made: its id, the function's name and its arguments as JSON text. */
export type ToolCall = {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
};

export type ChatMessage = {
  role: "system" | "user" | "assistant";
  content: string;
  /** an assistant's calls, as the answer had them */
  tool_calls?: ToolCall[];
};

/** The body of POST /v1/chat/completions that the playground and the CLI send. */
export type ChatRequest = {
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string[];
  stream?: boolean;
  /** `{type: "json_schema", json_schema: {name, schema}}`: the answer follows the schema */
  response_format?: { type: "json_schema"; json_schema: { name: string; schema: unknown } };
  /** OpenAI's `tools` (functions with JSON Schema parameters) */
  tools?: unknown[];
  tool_choice?: "auto" | "required" | "none";
  parallel_tool_calls?: boolean;
};

export type ChatUsage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

/** A piece of a streamed call: its id and name come first, then pieces of its arguments. */
export type ToolCallDelta = {
  index: number;
  id?: string;
  function?: { name?: string; arguments?: string };
};

/** One piece of a streamed answer: text, a piece of a tool call, and at the end the usage and finish reason. */
export type ChatDelta =
  | { kind: "text"; text: string }
  | { kind: "tool_call"; call: ToolCallDelta }
  | { kind: "end"; finishReason: string | null; usage: ChatUsage | null };

type StreamChunk = {
  choices?: {
    delta?: { content?: string | null; tool_calls?: ToolCallDelta[] };
    finish_reason?: string | null;
  }[];
  usage?: ChatUsage | null;
  error?: { message?: string; code?: string };
};

/**
 * The calls so far with one more piece added, as OpenAI's SDKs assemble them.
 *
 * @example calls = withToolCallDelta(calls, { index: 0, function: { arguments: '{"a"' } })
 */
export function withToolCallDelta(calls: ToolCall[], delta: ToolCallDelta): ToolCall[] {
  const next = [...calls];
  const current = next[delta.index] ?? {
    id: "",
    type: "function" as const,
    function: { name: "", arguments: "" },
  };
  next[delta.index] = {
    ...current,
    id: delta.id ?? current.id,
    function: {
      name: delta.function?.name ?? current.function.name,
      arguments: current.function.arguments + (delta.function?.arguments ?? ""),
    },
  };
  return next;
}

/**
 * Streams a chat completion: yields text as the gateway forwards it, then one
 * `end`. An error event inside the stream (e.g. `backend_stream_failed`) throws.
 *
 * @example for await (const d of streamChat(client, { model, messages })) ...
 */
export async function* streamChat(
  client: GatewayClient,
  request: ChatRequest,
  signal?: AbortSignal,
): AsyncGenerator<ChatDelta> {
  const body = { ...request, stream: true, stream_options: { include_usage: true } };
  const response = await client.send("POST", "/v1/chat/completions", {
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
    ...(signal ? { signal } : {}),
  });
  if (response.body === null) throw new GatewayError(502, "empty_stream", "The stream was empty");
  let finishReason: string | null = null;
  let usage: ChatUsage | null = null;
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data) as StreamChunk;
    if (chunk.error) {
      throw new GatewayError(
        502,
        chunk.error.code ?? "stream_error",
        chunk.error.message ?? "The stream failed",
      );
    }
    for (const choice of chunk.choices ?? []) {
      if (choice.delta?.content) yield { kind: "text", text: choice.delta.content };
      for (const call of choice.delta?.tool_calls ?? []) yield { kind: "tool_call", call };
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  yield { kind: "end", finishReason, usage };
}
