import { BodyNotJsonError, BodyTooLargeError, ChatCompletionRequestSchema } from "@lorafleet/api";
import { describe, expect, it } from "vitest";
import { InvalidRequestError } from "../engine/index.ts";
import { ExecutorRequestError } from "../executor/errors.ts";
import {
  AdapterStoreUnavailableError,
  AdapterUrlNotAllowedError,
  BackendUnavailableError,
  PromptTooLongError,
  QueueFullError,
  UnknownModelError,
} from "../serving/errors.ts";
import { toApiError } from "./openai-error.ts";

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

  it("words a refused body as the gateway does (requestIssue), with its status", () => {
    const refused = ChatCompletionRequestSchema.safeParse({
      model: "m",
      messages: [{ role: "user", content: "hi" }],
      logit_bias: { "5": 100 },
    });
    expect(toApiError(refused.error)).toMatchObject({
      status: 400,
      type: "invalid_request_error",
      message: "logit_bias: logit_bias is not supported by this backend",
      param: "logit_bias",
      code: "unsupported_parameter",
    });
    expect(toApiError(new BodyTooLargeError(64))).toMatchObject({
      status: 413,
      message: "the request body is larger than 64 bytes",
      code: "request_too_large",
    });
    expect(toApiError(new BodyNotJsonError("utf8"))).toMatchObject({
      status: 400,
      message: "the request body is not valid UTF-8",
      code: "invalid_json",
    });
  });

  it("answers the executor's refusal of a grammar with a 400 in its words", () => {
    const refused = new ExecutorRequestError("grammar_too_complex", "compiling took longer");
    expect(toApiError(refused)).toMatchObject({
      status: 400,
      message: "compiling took longer",
      code: "grammar_too_complex",
    });
    expect(toApiError(new ExecutorRequestError("internal", "x")).status).toBe(500);
  });

  it("hides the message of unexpected errors", () => {
    const error = toApiError(new Error("secret internals"));
    expect(error.status).toBe(500);
    expect(error.message).not.toContain("secret");
  });
});
