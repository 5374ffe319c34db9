import { describe, expect, it } from "vitest";
import { InvalidRequestError } from "../engine/index.ts";
import {
  AdapterStoreUnavailableError,
  AdapterUrlNotAllowedError,
  BackendUnavailableError,
  PromptTooLongError,
  QueueFullError,
  UnknownModelError,
} from "../serving/errors.ts";
import { fromZodError, toApiError } from "./openai-error.ts";
import { ChatCompletionRequestSchema, CompletionRequestSchema } from "./request-schemas.ts";

const chat = (extra: object) =>
  ChatCompletionRequestSchema.safeParse({
    model: "m",
    messages: [{ role: "user", content: "hi" }],
    ...extra,
  });

describe("request schemas", () => {
  it("normalises stop and text-part content", () => {
    const parsed = ChatCompletionRequestSchema.parse({
      model: "m",
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
    });
    expect(parsed.stop).toEqual(["END"]);
    expect(parsed.messages[0]?.content).toBe("ab");
    expect(chat({}).data?.stop).toEqual([]);
  });

  it("names the offending parameter, nested ones by path", () => {
    const bad = chat({ messages: [{ role: "wizard", content: "hi" }] });
    expect(bad.success).toBe(false);
    const error = fromZodError(bad.error as NonNullable<typeof bad.error>);
    expect(error.status).toBe(400);
    expect(error.param).toBe("messages[0].role");
    expect(fromZodError(chat({ top_p: 0 }).error as never).param).toBe("top_p");
  });

  it("refuses what the backend does not do instead of ignoring it", () => {
    const base = { model: "m", prompt: "p" };
    expect(CompletionRequestSchema.safeParse({ ...base, echo: true }).success).toBe(false);
    expect(CompletionRequestSchema.safeParse({ ...base, best_of: 3 }).success).toBe(false);
    expect(CompletionRequestSchema.safeParse({ ...base, prompt: [[1, 2], [3]] }).success).toBe(
      true,
    );
  });

  it("refuses unsupported OpenAI parameters by name, and lets their off values pass", () => {
    const refused = {
      tools: [{ type: "function", function: { name: "f" } }],
      tool_choice: "required",
      functions: [{ name: "f" }],
      response_format: { type: "json_object" },
      logit_bias: { "5": 100 },
      modalities: ["text", "audio"],
      audio: { voice: "x" },
      prediction: { type: "content", content: "x" },
    };
    for (const [param, value] of Object.entries(refused)) {
      const error = fromZodError(chat({ [param]: value }).error as never);
      expect(error.param).toBe(param);
      expect(error.code).toBe("unsupported_parameter");
    }
    const off = {
      tools: [],
      tool_choice: "none",
      response_format: { type: "text" },
      logit_bias: {},
      modalities: ["text"],
    };
    expect(chat(off).success).toBe(true);
    expect(chat({ tools: null, audio: null }).success).toBe(true);
    expect(
      CompletionRequestSchema.safeParse({ model: "m", prompt: "p", logit_bias: { "1": 1 } })
        .success,
    ).toBe(false);
  });

  it("checks the gateway's adapter fields", () => {
    const adapter = {
      id: "a",
      name: "n",
      sha256: "ab",
      config_url: "https://gw/c",
      weights_url: "https://gw/w",
    };
    const result = chat({ lorafleet: { tenant: "t", adapter } });
    expect(result.success).toBe(false);
    expect(fromZodError(result.error as never).param).toBe("lorafleet.adapter.sha256");
  });
});

describe("OpenAI error mapping", () => {
  it("gives each named error its status, type and code", () => {
    const full = toApiError(new QueueFullError("busy", 2));
    expect([full.status, full.type, full.code, full.headers["retry-after"]]).toEqual([
      429,
      "rate_limit_error",
      "queue_full",
      "2",
    ]);
    expect(toApiError(new UnknownModelError("x")).status).toBe(404);
    expect(toApiError(new PromptTooLongError("x")).code).toBe("context_length_exceeded");
    expect(toApiError(new BackendUnavailableError("x")).status).toBe(503);
    const invalid = toApiError(
      new InvalidRequestError(
        'request "req-4": token 99999 (#0 of prompt + stop tokens) is outside the vocabulary',
      ),
    );
    expect(invalid.message).toBe(
      "token 99999 (#0 of prompt + stop tokens) is outside the vocabulary",
    );
    const store = toApiError(new AdapterStoreUnavailableError("x"));
    expect(store).toMatchObject({ status: 503, code: "adapter_store_unavailable" });
    expect(store.headers["retry-after"]).toBe("1");
    const refused = toApiError(new AdapterUrlNotAllowedError("origin x is not allowed"));
    expect(refused).toMatchObject({
      status: 400,
      code: "adapter_url_not_allowed",
      param: "lorafleet.adapter",
    });
  });

  it("hides the message of unexpected errors", () => {
    const error = toApiError(new Error("secret internals"));
    expect(error.status).toBe(500);
    expect(error.message).not.toContain("secret");
  });
});
