import type { GatewayClient } from "./gateway-client.ts";
import { GatewayError } from "./gateway-error.ts";
import { sseData } from "./sse.ts";

export type ChatMessage = { role: "system" | "user" | "assistant"; content: string };

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
};

export type ChatUsage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

/** One piece of a streamed answer: text, and at the end the usage and finish reason. */
export type ChatDelta =
  | { kind: "text"; text: string }
  | { kind: "end"; finishReason: string | null; usage: ChatUsage | null };

type StreamChunk = {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: ChatUsage | null;
  error?: { message?: string; code?: string };
};

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
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  yield { kind: "end", finishReason, usage };
}
