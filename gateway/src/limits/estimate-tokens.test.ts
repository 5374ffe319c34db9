import { ChatCompletionRequestSchema, CompletionRequestSchema } from "@lorafleet/api";
import { describe, expect, it } from "vitest";
import { defaultCompletionEstimate, estimateTokens } from "./estimate-tokens.ts";

const chat = (extra: object) =>
  ChatCompletionRequestSchema.parse({
    model: "m",
    messages: [{ role: "user", content: "hello there" }],
    ...extra,
  });
const completion = (extra: object) => CompletionRequestSchema.parse({ model: "m", ...extra });

describe("estimateTokens", () => {
  it("counts the prompt's JSON at 4 characters a token", () => {
    // [{"role":"user","content":"hello there"}] is 41 characters
    expect(estimateTokens(chat({ max_tokens: 1 }))).toEqual({ prompt: 11, total: 12 });
    // text parts count as the text they join into
    const parts = chat({
      messages: [{ role: "user", content: [{ type: "text", text: "hello there" }] }],
    });
    expect(estimateTokens(parts).prompt).toBe(11);
  });

  it("reserves max_completion_tokens over max_tokens, or the default, per choice", () => {
    expect(estimateTokens(chat({ max_tokens: 5, max_completion_tokens: 7, n: 3 })).total).toBe(
      11 + 3 * 7,
    );
    expect(estimateTokens(chat({})).total).toBe(11 + defaultCompletionEstimate);
  });

  it("reserves completions per prompt of a multi-prompt completion, but one for token ids", () => {
    expect(estimateTokens(completion({ prompt: ["ab", "cd"], max_tokens: 4, n: 2 }))).toEqual({
      prompt: 3, // ["ab","cd"]: 11 characters
      total: 3 + 2 * 2 * 4,
    });
    expect(estimateTokens(completion({ prompt: [[1, 2], [3]], max_tokens: 4 })).total).toBe(
      3 + 2 * 4,
    );
    expect(estimateTokens(completion({ prompt: [1, 2, 3], max_tokens: 4 })).total).toBe(2 + 4);
  });
});
