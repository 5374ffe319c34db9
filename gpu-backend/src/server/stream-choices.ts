// The SSE half of /v1/chat/completions and /v1/completions: OpenAI's chunk envelope
// around each choice delta, the error event if generation fails mid-stream, the usage
// chunk when `stream_options.include_usage` asks for it (and usage so far in every chunk with
// vLLM's `continuous_usage_stats`), then [DONE].
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { GenerationDelta } from "../serving/generation-stream.ts";
import {
  type ChoiceStream,
  type ChoiceUsage,
  cancelChoices,
  mergeChoices,
  usageOf,
} from "./choices.ts";
import { toApiError } from "./openai-error.ts";
import { completionId, nowSeconds } from "./openai-format.ts";

export interface ChoiceStreamFormat {
  kind: "chat" | "completion";
  model: string;
  includeUsage: boolean;
  /** usage so far in every chunk (vLLM's stream_options.continuous_usage_stats), not only at the end */
  continuousUsage: boolean;
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
    const usage = new Map<number, ChoiceUsage>();
    const promptIndex = new Map(choices.map((choice) => [choice.index, choice.promptIndex]));
    const usageSoFar = () => usageOf(format.promptLengths, [...usage.values()]);
    const chunk = (choicesPart: unknown[], last: unknown = undefined) =>
      sse.writeSSE({
        data: JSON.stringify({
          id,
          object: chat ? "chat.completion.chunk" : "text_completion",
          created,
          model: format.model,
          choices: choicesPart,
          ...(format.continuousUsage
            ? { usage: last ?? usageSoFar() }
            : format.includeUsage
              ? { usage: last ?? null }
              : {}),
        }),
      });
    for (const choice of format.opening) await chunk([choice]);
    try {
      for await (const { index, delta } of mergeChoices(choices)) {
        usage.set(index, {
          promptIndex: promptIndex.get(index) ?? 0,
          numCachedTokens: delta.numCachedTokens,
          numOutputTokens: delta.numOutputTokens,
        });
        for (const choice of format.choicesOf(index, delta)) await chunk([choice]);
      }
    } catch (error) {
      await sse.writeSSE({ data: JSON.stringify(toApiError(error).body) });
      cancelChoices(choices);
    }
    if (format.includeUsage) await chunk([], usageSoFar());
    await sse.writeSSE({ data: "[DONE]" });
  });
}
