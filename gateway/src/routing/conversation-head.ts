import type { InferenceRequest } from "@lorafleet/api";

/**
 * How many characters of a conversation's head key its routing (K). The gateway does not
 * tokenize, so K counts characters: 16,384 is ~4,000 tokens of English, room for a long
 * SaaS system prompt (~1,500 tokens, ~6,000 characters) and the first user turn, so two
 * conversations behind one system prompt still get different keys. Two requests whose
 * heads agree on all K characters share at least that much prefix, so sending them to one
 * backend is what the prefix cache wants anyway; and K bounds the work per request.
 */
export const headChars = 16_384;

/**
 * The part of a request that every later turn of its conversation repeats unchanged, cut
 * to its first `headChars` characters: for a chat, the messages up to and including the
 * first user message (system prompt + first user turn: a chat app sends the whole history
 * every turn, so these lead each turn's prompt), each as role, name and content; for a
 * completion, its (first) prompt, text or token ids. A completion prompt that grows turn by
 * turn keeps its head once it is `headChars` long.
 *
 * @example conversationHead({ model: "m", messages: [{ role: "user", content: "hi" }, ...] })
 */
export function conversationHead(body: InferenceRequest): string {
  if ("messages" in body) {
    const firstUser = body.messages.findIndex((m) => m.role === "user");
    const head = firstUser === -1 ? body.messages : body.messages.slice(0, firstUser + 1);
    let text = "";
    for (const m of head) {
      // as JSON: a message boundary is never ambiguous, whatever the content holds
      text += JSON.stringify([m.role, m.name ?? null, m.content]);
      if (text.length >= headChars) break;
    }
    return text.slice(0, headChars);
  }
  const { prompt } = body;
  if (typeof prompt === "string") return prompt.slice(0, headChars);
  const ids = (list: readonly number[]) => list.slice(0, headChars).join(",");
  const first = prompt[0];
  if (typeof first === "string") return first.slice(0, headChars);
  // one prompt of token ids, or the first of several
  return Array.isArray(first) ? ids(first) : ids(prompt as number[]);
}
