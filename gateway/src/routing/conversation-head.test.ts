import { ChatCompletionRequestSchema, CompletionRequestSchema } from "@lorafleet/api";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { conversationHead, headChars } from "./conversation-head.ts";

type Message = { role: "system" | "user" | "assistant"; content: string };
const chatHead = (messages: Message[]) =>
  conversationHead(ChatCompletionRequestSchema.parse({ model: "m", messages }));
const completionHead = (prompt: unknown) =>
  conversationHead(CompletionRequestSchema.parse({ model: "m", prompt }));

describe("conversationHead", () => {
  it("is the same for every turn of a chat: system prompt and first user turn", () => {
    fc.assert(
      fc.property(
        fc.option(fc.string(), { nil: undefined }),
        fc.string(),
        fc.array(fc.tuple(fc.string(), fc.string()), { maxLength: 9 }),
        (system, firstUser, laterTurns) => {
          const messages: Message[] = [
            ...(system === undefined ? [] : [{ role: "system" as const, content: system }]),
            { role: "user", content: firstUser },
          ];
          const first = chatHead(messages);
          for (const [answer, next] of laterTurns) {
            messages.push({ role: "assistant", content: answer }, { role: "user", content: next });
            expect(chatHead(messages)).toBe(first);
          }
        },
      ),
    );
  });

  it("differs between conversations that differ in the system prompt or the first user turn", () => {
    const base = chatHead([
      { role: "system", content: "You are a support bot." },
      { role: "user", content: "My order is late." },
    ]);
    expect(
      chatHead([
        { role: "system", content: "You are a support bot." },
        { role: "user", content: "My order is lost." },
      ]),
    ).not.toBe(base);
    expect(
      chatHead([
        { role: "system", content: "You are a sales bot." },
        { role: "user", content: "My order is late." },
      ]),
    ).not.toBe(base);
    // where one message ends and the next begins is part of the head
    expect(
      chatHead([
        { role: "system", content: "ab" },
        { role: "user", content: "c" },
      ]),
    ).not.toBe(
      chatHead([
        { role: "system", content: "a" },
        { role: "user", content: "bc" },
      ]),
    );
  });

  it("is cut to headChars, so a long system prompt alone keys conversations that share it", () => {
    const system = "Answer briefly. ".repeat(2_000); // 32,000 characters
    const head = chatHead([
      { role: "system", content: system },
      { role: "user", content: "one" },
    ]);
    expect(head).toHaveLength(headChars);
    expect(
      chatHead([
        { role: "system", content: system },
        { role: "user", content: "two" },
      ]),
    ).toBe(head);
  });

  it("keys a completion by its first prompt's first headChars characters or token ids", () => {
    expect(completionHead("Once upon a time")).toBe("Once upon a time");
    expect(completionHead("x".repeat(headChars + 10))).toBe("x".repeat(headChars));
    expect(completionHead(["first", "second"])).toBe("first");
    expect(completionHead([5, 6, 7])).toBe("5,6,7");
    expect(completionHead([[5, 6], [7]])).toBe("5,6");
    const ids = Array.from({ length: headChars + 5 }, (_, i) => i % 100);
    expect(completionHead(ids).split(",")).toHaveLength(headChars);
  });
});
