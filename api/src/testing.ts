// Test support: a minimal chat body with fields added, and how the shared schema refuses one.
import { ChatCompletionRequestSchema } from "./chat-completion-request.ts";
import { type RequestIssue, requestIssue } from "./request-issue.ts";

export const chatBody = (extra: object) => ({
  model: "m",
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

/** The issue of a chat body with `extra` fields; throws when the schema takes it. */
export function chatIssue(extra: object): RequestIssue {
  const result = ChatCompletionRequestSchema.safeParse(chatBody(extra));
  if (result.success) throw new Error(`accepted ${JSON.stringify(extra)}`);
  return requestIssue(result.error);
}
