// OpenAI's response shapes for chat and text completions, whole and as stream chunks.
import type { TokenInfo } from "../serving/generation-stream.ts";

const encoder = new TextEncoder();
const bytesOf = (text: string) => [...encoder.encode(text)];

/** chat's `logprobs.content` entries */
export function chatLogprobs(tokens: TokenInfo[]) {
  return {
    content: tokens.map((token) => ({
      token: token.text,
      logprob: token.logprob ?? 0,
      bytes: bytesOf(token.text),
      top_logprobs: token.top.map((top) => ({
        token: top.text,
        logprob: top.logprob,
        bytes: bytesOf(top.text),
      })),
    })),
  };
}

/** the completions API's logprobs; text_offset counts from `offset`, the choice's text so far */
export function completionLogprobs(tokens: TokenInfo[], offset: number) {
  let at = offset;
  const textOffset: number[] = [];
  for (const token of tokens) {
    textOffset.push(at);
    at += token.text.length;
  }
  return {
    tokens: tokens.map((token) => token.text),
    token_logprobs: tokens.map((token) => token.logprob ?? 0),
    top_logprobs: tokens.map((token) =>
      Object.fromEntries(token.top.map((top) => [top.text, top.logprob])),
    ),
    text_offset: textOffset,
  };
}

export function completionId(prefix: "chatcmpl" | "cmpl"): string {
  return `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`;
}

export const nowSeconds = () => Math.floor(Date.now() / 1000);
