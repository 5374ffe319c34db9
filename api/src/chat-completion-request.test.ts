import { describe, expect, it } from "vitest";
import {
  BackendChatCompletionRequestSchema,
  ChatCompletionRequestSchema,
} from "./chat-completion-request.ts";
import { requestIssue } from "./request-issue.ts";
import { chatBody, chatIssue } from "./testing.ts";

describe("ChatCompletionRequestSchema", () => {
  it("normalises stop and text-part content", () => {
    const parsed = ChatCompletionRequestSchema.parse(
      chatBody({
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "a" },
              { type: "text", text: "b" },
            ],
          },
        ],
        stop: "END",
      }),
    );
    expect(parsed.stop).toEqual(["END"]);
    expect(parsed.messages[0]?.content).toBe("ab");
    expect(ChatCompletionRequestSchema.parse(chatBody({})).stop).toEqual([]);
  });

  it("names the offending parameter, nested ones by path", () => {
    expect(chatIssue({ messages: [{ role: "wizard", content: "hi" }] }).param).toBe(
      "messages[0].role",
    );
    expect(chatIssue({ top_p: 0 })).toEqual({
      message: "top_p: Too small: expected number to be >0",
      param: "top_p",
      code: "invalid_value",
    });
    expect(chatIssue({ messages: [] }).param).toBe("messages");
    expect(chatIssue({ max_tokens: -1 }).param).toBe("max_tokens");
    expect(chatIssue({ stream: "yes" }).param).toBe("stream");
  });

  it("refuses unsupported OpenAI parameters by name, and lets their off values pass", () => {
    const refused = {
      logit_bias: { "5": 100 },
      modalities: ["text", "audio"],
      audio: { voice: "x" },
      prediction: { type: "content", content: "x" },
    };
    for (const [param, value] of Object.entries(refused)) {
      const issue = chatIssue({ [param]: value });
      expect([issue.param, issue.code]).toEqual([param, "unsupported_parameter"]);
    }
    const off = {
      logit_bias: {},
      modalities: ["text"],
      stream: null,
    };
    expect(ChatCompletionRequestSchema.safeParse(chatBody(off)).success).toBe(true);
    expect(ChatCompletionRequestSchema.safeParse(chatBody({ audio: null })).success).toBe(true);
  });

  it("leaves `lorafleet` to the backend's schema, which checks the gateway's adapter fields", () => {
    const adapter = {
      id: "a",
      name: "n",
      sha256: "ab",
      config_url: "https://gw/c",
      weights_url: "https://gw/w",
    };
    const withField = chatBody({ lorafleet: { tenant: "t", adapter } });
    // A client's own `lorafleet` is not the client's to set: ignored, the gateway writes its own.
    expect("lorafleet" in ChatCompletionRequestSchema.parse(withField)).toBe(false);
    const result = BackendChatCompletionRequestSchema.safeParse(withField);
    expect(result.success).toBe(false);
    expect(requestIssue(result.error as never).param).toBe("lorafleet.adapter.sha256");
    const good = { ...adapter, sha256: "a".repeat(64) };
    expect(
      BackendChatCompletionRequestSchema.parse(
        chatBody({ lorafleet: { tenant: "t", adapter: good } }),
      ).lorafleet?.adapter,
    ).toEqual(good);
  });
});
