// The SSE half of /v1/chat/completions and /v1/completions: OpenAI's chunk envelope
// around each choice delta, the error event if generation fails mid-stream, the usage
// chunk when `stream_options.include_usage` asks for it, then [DONE].
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { GenerationDelta } from "../serving/generation-stream.ts";
import { type ChoiceStream, cancelChoices, mergeChoices, usageOf } from "./choices.ts";
import { toApiError } from "./openai-error.ts";
import { completionId, nowSeconds } from "./openai-format.ts";

export interface ChoiceStreamFormat {
  kind: "chat" | "completion";
  model: string;
  includeUsage: boolean;
  /** token counts of the prompts, for usage */
  promptLengths: number[];
  /** choice objects sent before any delta (chat: the assistant role) */
  opening: unknown[];
  /** the choice objects of one delta, each its own chunk (none: nothing to send) */
  choicesOf: (index: number, delta: GenerationDelta) => unknown[];
}

/** Whether a delta has anything to send: text, an end, or logprobs asked for. */
export function hasNews(delta: GenerationDelta, logprobs: boolean): boolean {
  return delta.text !== "" || delta.finishReason !== null || logprobs;
}

/** @example return streamChoices(c, choices, { kind: "chat", model, ... }) */
export function streamChoices(c: Context, choices: ChoiceStream[], format: ChoiceStreamFormat) {
  const chat = format.kind === "chat";
  const id = completionId(chat ? "chatcmpl" : "cmpl");
  const created = nowSeconds();
  return streamSSE(c, async (sse) => {
    sse.onAbort(() => cancelChoices(choices));
    const chunk = (choicesPart: unknown[], usage: unknown = undefined) =>
      sse.writeSSE({
        data: JSON.stringify({
          id,
          object: chat ? "chat.completion.chunk" : "text_completion",
          created,
          model: format.model,
          choices: choicesPart,
          ...(format.includeUsage ? { usage: usage ?? null } : {}),
        }),
      });
    for (const choice of format.opening) await chunk([choice]);
    const outputTokens = new Map<number, number>();
    try {
      for await (const { index, delta } of mergeChoices(choices)) {
        outputTokens.set(index, delta.numOutputTokens);
        for (const choice of format.choicesOf(index, delta)) await chunk([choice]);
      }
    } catch (error) {
      await sse.writeSSE({ data: JSON.stringify(toApiError(error).body) });
      cancelChoices(choices);
    }
    if (format.includeUsage) {
      const completionTokens = [...outputTokens.values()].reduce((a, b) => a + b, 0);
      await chunk([], usageOf(format.promptLengths, completionTokens));
    }
    await sse.writeSSE({ data: "[DONE]" });
  });
}
