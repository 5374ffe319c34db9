import type { InferenceRequest } from "@lorafleet/api";

/**
 * What bounds a base model's token counts, from its registration (`PUT /admin/base-models`).
 * The gateway does not render chat templates, so it bounds what a template adds instead.
 */
export type TokenBounds = {
  /**
   * Most tokens a chat template adds for one message (its markers, the role's framing),
   * and once more for the conversation (the generation prompt, a default system message).
   */
  templateTokensPerMessage: number;
  /** The model's context (config.json `max_position_embeddings`): a sequence never holds more. */
  contextLength: number;
};

/**
 * What an unregistered value falls back to: 64 template tokens per message is several times
 * what ChatML or Llama 3 templates add (ChatML: 4-5 per message; SmolLM2's default system
 * message ~20); 131,072 is the largest context of the models we serve.
 */
export const defaultTokenBounds: TokenBounds = {
  templateTokensPerMessage: 64,
  contextLength: 131_072,
};

/** Tokens a request may use, reserved at admission and settled with the backend's count. */
export type TokenEstimate = {
  /** an upper bound of the prompt tokens (every prompt of a multi-prompt completion) */
  prompt: number;
  /** an upper bound of all tokens: the prompt plus every completion the request allows */
  total: number;
};

const utf8 = new TextEncoder();

function utf8Bytes(text: string): number {
  return utf8.encode(text).length;
}

/**
 * An upper bound of a chat prompt's tokens that no choice of characters beats. The models
 * we serve use byte-level BPE or byte-fallback SentencePiece: every token of text covers at
 * least one UTF-8 byte of it (special tokens come only from the template). So the rendered
 * prompt has at most as many tokens as its strings have UTF-8 bytes, plus what the template
 * adds around each message and the conversation.
 */
function chatPromptBound(
  messages: { role: string; content: string; name?: string | null | undefined }[],
  bounds: TokenBounds,
): number {
  let bytes = 0;
  for (const message of messages) {
    bytes += utf8Bytes(message.role) + utf8Bytes(message.content);
    if (message.name != null) bytes += utf8Bytes(message.name);
  }
  return bytes + (messages.length + 1) * bounds.templateTokensPerMessage;
}

/**
 * Each prompt of a completion bounded as above (a text: its UTF-8 bytes plus one message's
 * template allowance, for a BOS or a SentencePiece prefix; token ids: their count).
 */
function completionPromptBounds(
  prompt: string | string[] | number[] | number[][],
  bounds: TokenBounds,
): number[] {
  const text = (t: string) => utf8Bytes(t) + bounds.templateTokensPerMessage;
  if (typeof prompt === "string") return [text(prompt)];
  if (prompt.every((p) => typeof p === "number")) return [prompt.length];
  return prompt.map((p) => (typeof p === "string" ? text(p) : p.length));
}

/**
 * Upper bounds of the tokens a request can use: each prompt's bound (see chatPromptBound),
 * capped at the context (a longer prompt is refused, and refunded), plus, for each prompt
 * and each of its `n` choices, max_completion_tokens (chat) or max_tokens, or the whole
 * context when neither is set (the backend generates until the context is full).
 *
 * @example estimateTokens(ChatCompletionRequestSchema.parse(body), defaultTokenBounds).total
 */
export function estimateTokens(body: InferenceRequest, bounds: TokenBounds): TokenEstimate {
  const prompts =
    "messages" in body
      ? [chatPromptBound(body.messages, bounds)]
      : completionPromptBounds(body.prompt, bounds);
  const prompt = prompts.reduce((sum, p) => sum + Math.min(p, bounds.contextLength), 0);
  const maxTokens =
    ("messages" in body ? body.max_completion_tokens : null) ??
    body.max_tokens ??
    bounds.contextLength;
  const perCompletion = Math.min(maxTokens, bounds.contextLength);
  return { prompt, total: prompt + prompts.length * (body.n ?? 1) * perCompletion };
}
