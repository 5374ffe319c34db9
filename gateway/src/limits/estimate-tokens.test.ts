import { ChatCompletionRequestSchema, CompletionRequestSchema } from "@lorafleet/api";
import { describe, expect, it } from "vitest";
import { defaultTokenBounds, estimateTokens, type TokenBounds } from "./estimate-tokens.ts";

const bounds: TokenBounds = { templateTokensPerMessage: 10, contextLength: 1000 };
const chat = (extra: object) =>
  ChatCompletionRequestSchema.parse({
    model: "m",
    messages: [{ role: "user", content: "hello there" }],
    ...extra,
  });
const completion = (extra: object) => CompletionRequestSchema.parse({ model: "m", ...extra });

describe("estimateTokens", () => {
  it("bounds a chat prompt by the UTF-8 bytes of its strings plus the template per message and once more", () => {
    // "user" 4 + "hello there" 11 bytes, 2 template allowances of 10
    expect(estimateTokens(chat({ max_tokens: 1 }), bounds)).toEqual({ prompt: 35, total: 36 });
    // text parts count as the text they join into; a name counts too
    const parts = chat({
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "hello " },
            { type: "text", text: "there" },
          ],
        },
        { role: "assistant", content: null, name: "bob" },
      ],
      max_tokens: 1,
    });
    expect(estimateTokens(parts, bounds).prompt).toBe(4 + 11 + 9 + 3 + 3 * 10);
  });

  it("counts the bytes characters take, so CJK, emoji and rare scripts cannot beat the bound", () => {
    const prompt = (content: string) =>
      estimateTokens(chat({ messages: [{ role: "user", content }], max_tokens: 1 }), {
        templateTokensPerMessage: 0,
        contextLength: 100_000,
      }).prompt;
    expect(prompt("鑫".repeat(200))).toBe(4 + 3 * 200);
    expect(prompt("😀".repeat(200))).toBe(4 + 4 * 200);
    // a ZWJ family: 4 emoji of 4 bytes and 3 joiners of 3
    expect(prompt("👨‍👩‍👧‍👦")).toBe(4 + 25);
    expect(prompt("𓀀".repeat(10))).toBe(4 + 40);
  });

  it("reserves max_completion_tokens over max_tokens, or the whole context, per choice", () => {
    expect(estimateTokens(chat({ max_tokens: 5, max_completion_tokens: 7, n: 3 }), bounds)).toEqual(
      { prompt: 35, total: 35 + 3 * 7 },
    );
    expect(estimateTokens(chat({}), bounds).total).toBe(35 + 1000);
    expect(estimateTokens(chat({ max_tokens: 5000 }), bounds).total).toBe(35 + 1000);
  });

  it("caps a prompt at the context: a longer one is refused by the backend and refunded", () => {
    const long = chat({ messages: [{ role: "user", content: "x".repeat(5000) }], max_tokens: 2 });
    expect(estimateTokens(long, bounds)).toEqual({ prompt: 1000, total: 1002 });
  });

  it("bounds each prompt of a completion and reserves its choices, but token ids count as they are", () => {
    expect(
      estimateTokens(completion({ prompt: ["ab", "cdé"], max_tokens: 4, n: 2 }), bounds),
    ).toEqual({
      prompt: 2 + 10 + 4 + 10,
      total: 26 + 2 * 2 * 4,
    });
    expect(estimateTokens(completion({ prompt: [[1, 2], [3]], max_tokens: 4 }), bounds)).toEqual({
      prompt: 3,
      total: 3 + 2 * 4,
    });
    expect(estimateTokens(completion({ prompt: [1, 2, 3], max_tokens: 4 }), bounds)).toEqual({
      prompt: 3,
      total: 3 + 4,
    });
    expect(estimateTokens(completion({ prompt: "hi" }), defaultTokenBounds)).toEqual({
      prompt: 66,
      total: 66 + 131_072,
    });
  });
});
