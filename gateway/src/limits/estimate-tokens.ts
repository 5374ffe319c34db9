import type { InferenceRequest } from "@lorafleet/api";

/** Tokens a request is expected to use, reserved at admission and corrected at settle. */
export type TokenEstimate = {
  /** about 4 characters per token of the prompt (messages or prompt, as JSON) */
  prompt: number;
  /** the prompt plus every completion the request allows */
  total: number;
};

/** Completion tokens reserved for a request that names no max_tokens (corrected at settle). */
export const defaultCompletionEstimate = 256;

/**
 * About 4 characters per token, plus the completions the request allows: one per prompt of
 * a multi-prompt completion, times `n`, each of max_completion_tokens (chat) or max_tokens.
 *
 * @example estimateTokens(ChatCompletionRequestSchema.parse(body)).total
 */
export function estimateTokens(body: InferenceRequest): TokenEstimate {
  const chat = "messages" in body;
  const prompt = Math.ceil(JSON.stringify(chat ? body.messages : body.prompt).length / 4);
  const prompts =
    !chat && Array.isArray(body.prompt) && body.prompt.some((p) => typeof p !== "number")
      ? body.prompt.length
      : 1;
  const perCompletion =
    (chat ? body.max_completion_tokens : null) ?? body.max_tokens ?? defaultCompletionEstimate;
  return { prompt, total: prompt + prompts * (body.n ?? 1) * perCompletion };
}
