/** An OpenAI request body: the estimate reads messages or prompt, n, and max_(completion_)tokens. */
type EstimatedBody = Record<string, unknown>;

const positive = (v: unknown): number | null =>
  Number.isSafeInteger(v) && (v as number) > 0 ? (v as number) : null;

/** Completion tokens reserved for a request that names no max_tokens (corrected at settle). */
export const defaultCompletionEstimate = 256;

/** How many completions a request asks for: one per prompt of a multi-prompt request, times n. */
function completionCount(body: EstimatedBody): number {
  const prompts =
    Array.isArray(body.prompt) && body.prompt.some((p) => typeof p === "string" || Array.isArray(p))
      ? body.prompt.length
      : 1;
  return prompts * (positive(body.n) ?? 1);
}

/** About 4 characters per token, plus the completions the request allows. */
export function estimateTokens(body: EstimatedBody): { prompt: number; total: number } {
  const prompt = Math.ceil(JSON.stringify(body.messages ?? body.prompt ?? "").length / 4);
  return {
    prompt,
    total:
      prompt +
      completionCount(body) *
        (positive(body.max_completion_tokens) ??
          positive(body.max_tokens) ??
          defaultCompletionEstimate),
  };
}
