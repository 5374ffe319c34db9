// The n choices of one request (times the prompts of a multi-prompt completion) as
// streams: started together (all or none), read together, and cancelled together
// when the client goes away.
import type { GenerationDelta, GenerationStream, TokenInfo } from "../serving/generation-stream.ts";
import type { GenerateRequest, ServingLoop } from "../serving/serving-loop.ts";
import { choiceRequest } from "./generation-request.ts";

export interface ChoiceStream {
  index: number;
  /** which of the request's prompts it continues */
  promptIndex: number;
  stream: GenerationStream;
  numPromptTokens: number;
}

/**
 * Starts n choices per request; if one cannot start, those already started are cancelled,
 * and all are cancelled when `clientGone` fires.
 */
export async function startChoices(
  serving: ServingLoop,
  requests: GenerateRequest[],
  n: number,
  clientGone: AbortSignal,
): Promise<ChoiceStream[]> {
  // all the choices' seats at once: part of the room for each of many requests serves none
  const seats = serving.reserve(requests.length * n, requests.length > 1 ? "prompt" : "n");
  const started: ChoiceStream[] = [];
  try {
    for (const [promptIndex, request] of requests.entries()) {
      for (let choice = 0; choice < n; choice++) {
        const stream = await serving.generate(choiceRequest(request, choice), seats);
        started.push({
          index: promptIndex * n + choice,
          promptIndex,
          stream,
          numPromptTokens: request.promptIds.length,
        });
      }
    }
  } catch (error) {
    cancelChoices(started);
    throw error;
  } finally {
    seats.release();
  }
  // A client that left while the choices were starting (an adapter download, a full
  // queue) has already fired its signal: its choices end in the engine at once.
  if (clientGone.aborted) cancelChoices(started);
  else clientGone.addEventListener("abort", () => cancelChoices(started), { once: true });
  return started;
}

/**
 * Resolves once every choice has its first output; if one failed before that, cancels the
 * rest and rejects with its error (so a streamed answer can still answer it with a status).
 */
export async function awaitFirstOutputs(choices: ChoiceStream[]): Promise<void> {
  try {
    await Promise.all(choices.map((choice) => choice.stream.started()));
  } catch (error) {
    cancelChoices(choices);
    throw error;
  }
}

export function cancelChoices(choices: ChoiceStream[]): void {
  for (const { stream } of choices) void stream[Symbol.asyncIterator]().return?.();
}

export interface CollectedChoice extends ChoiceUsage {
  index: number;
  text: string;
  tokens: TokenInfo[];
  finishReason: string;
}

/** What one choice adds to usage. */
export interface ChoiceUsage {
  promptIndex: number;
  numCachedTokens: number;
  numOutputTokens: number;
}

/**
 * Reads every choice to its end. One failed choice ends the others too: the client gets
 * one error, not half an answer.
 */
export async function collectChoices(choices: ChoiceStream[]): Promise<CollectedChoice[]> {
  try {
    return await Promise.all(choices.map(collectChoice));
  } catch (error) {
    cancelChoices(choices);
    throw error;
  }
}

async function collectChoice(choice: ChoiceStream): Promise<CollectedChoice> {
  let text = "";
  const tokens: TokenInfo[] = [];
  let finishReason = "stop";
  let numOutputTokens = 0;
  let numCachedTokens = 0;
  for await (const delta of choice.stream) {
    text += delta.text;
    tokens.push(...delta.tokens);
    numOutputTokens = delta.numOutputTokens;
    numCachedTokens = delta.numCachedTokens;
    if (delta.finishReason !== null) finishReason = delta.finishReason;
  }
  const { index, promptIndex } = choice;
  return { index, promptIndex, text, tokens, finishReason, numOutputTokens, numCachedTokens };
}

/**
 * Usage as OpenAI counts it: each prompt once, every choice's output. A prompt's cached
 * tokens (`prompt_tokens_details.cached_tokens`) are the fewest any of its choices found in
 * the prefix cache: its n choices share its pages, but only what was cached before the
 * request counts.
 */
export function usageOf(promptLengths: number[], choices: ChoiceUsage[]) {
  const promptTokens = promptLengths.reduce((a, b) => a + b, 0);
  const completionTokens = choices.reduce((sum, choice) => sum + choice.numOutputTokens, 0);
  const cachedTokens = promptLengths.reduce((sum, _, prompt) => {
    const cached = choices.filter((c) => c.promptIndex === prompt).map((c) => c.numCachedTokens);
    return sum + (cached.length === 0 ? 0 : Math.min(...cached));
  }, 0);
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** All choices' deltas interleaved as they come. */
export async function* mergeChoices(
  choices: ChoiceStream[],
): AsyncGenerator<{ index: number; delta: GenerationDelta }> {
  const iterators = choices.map((choice) => ({
    index: choice.index,
    iterator: choice.stream[Symbol.asyncIterator](),
  }));
  const pending = new Map<
    number,
    Promise<{ slot: number; result: IteratorResult<GenerationDelta> }>
  >();
  const pull = (slot: number) => {
    const entry = iterators[slot];
    if (entry)
      pending.set(
        slot,
        entry.iterator.next().then((result) => ({ slot, result })),
      );
  };
  iterators.forEach((_, slot) => {
    pull(slot);
  });
  while (pending.size > 0) {
    const { slot, result } = await Promise.race(pending.values());
    pending.delete(slot);
    if (result.done) continue;
    yield { index: iterators[slot]?.index ?? slot, delta: result.value };
    pull(slot);
  }
}
