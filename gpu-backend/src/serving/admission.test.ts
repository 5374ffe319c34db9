// Admission as a function of state: no engine, no executor, no clock.
import { describe, expect, it } from "vitest";
import { toApiError } from "../server/openai-error.ts";
import { byteLevelTokenizer } from "../tokenizer/testing/byte-level-tokenizer.ts";
import { Admission, contextLength, type Phase } from "./admission.ts";
import {
  BackendUnavailableError,
  PromptTooLongError,
  QueueFullError,
  TooManyCompletionsError,
} from "./errors.ts";

const admission = () => new Admission({ maxModelLen: 100, maxUnfinished: 8 });
const request = (promptLength: number, maxTokens: number | null) => ({ promptLength, maxTokens });

describe("contextLength", () => {
  it("is the flag's, within the model's positions and the KV one request may take", () => {
    expect(contextLength(0, 2048, 8192)).toBe(2048); // 0 = the model's positions
    expect(contextLength(512, 2048, 8192)).toBe(512);
    expect(contextLength(4096, 2048, 8192)).toBe(2048);
    expect(contextLength(0, 2048, 1000)).toBe(1000); // a small pool
    expect(contextLength(1500, 2048, 1000)).toBe(1000);
  });
});

describe("Admission.admit", () => {
  it("grants maxTokens, or all the room the context leaves", () => {
    const a = admission();
    const seats = a.reserve(0, 2, "n");
    expect(a.admit("serving", request(30, 70), seats)).toBe(70);
    expect(a.admit("serving", request(30, null), seats)).toBe(70);
    expect(a.admit("serving", request(99, null), seats)).toBe(1);
  });

  it("refuses a prompt + completion over the context with OpenAI's message", () => {
    const a = admission();
    const seats = a.reserve(0, 1, "n");
    const tooLong = () => a.admit("serving", request(30, 71), seats);
    expect(tooLong).toThrow(PromptTooLongError);
    expect(tooLong).toThrow(
      "This model's maximum context length is 100 tokens. However, you requested 101 tokens (30 in the messages, 71 in the completion). Please reduce the length of the messages or completion.",
    );
    // no room left for even one token
    expect(() => a.admit("serving", request(100, null), seats)).toThrow(
      "However, you requested 101 tokens (100 in the messages, 1 in the completion)",
    );
    expect(toApiError(new PromptTooLongError("x")).body.error).toEqual({
      message: "x",
      type: "invalid_request_error",
      param: "messages",
      code: "context_length_exceeded",
    });
  });

  it("refuses everything with a retriable 503 unless serving, before looking at the request", () => {
    const a = admission();
    const seats = a.reserve(0, 1, "n");
    const refusals: [Phase, string][] = [
      ["draining", "this backend is shutting down; retry on another"],
      ["restarting", "the executor is restarting; retry shortly"],
      ["failed", "the executor crashed and could not be restarted; retry on another backend"],
    ];
    for (const [phase, message] of refusals) {
      const refused = () => a.admit(phase, request(1000, null), seats);
      expect(refused).toThrow(BackendUnavailableError);
      expect(refused).toThrow(message);
    }
    const apiError = toApiError(new BackendUnavailableError("x"));
    expect([apiError.status, apiError.body.error.code, apiError.headers]).toEqual([
      503,
      "backend_unavailable",
      { "retry-after": "1" },
    ]);
  });

  it("needs a seat left in the reservation", () => {
    const a = admission();
    const seats = a.reserve(0, 1, "n");
    seats.take();
    expect(() => a.admit("serving", request(1, 1), seats)).toThrow("no reserved seat left");
  });
});

describe("Admission.reserve", () => {
  it("holds all the seats or none, and counts held seats against the bound", () => {
    const a = admission();
    const first = a.reserve(3, 4, "n"); // 3 unfinished + 4 held = 7 of 8
    expect(first.remaining).toBe(4);
    const full = () => a.reserve(3, 2, "n");
    expect(full).toThrow(QueueFullError);
    expect(full).toThrow(
      "The server has 7 requests in progress and room for 8; this one needs 2. Retry later.",
    );
    // a taken seat is an unfinished request now: the caller counts it there
    first.take();
    expect(() => a.reserve(4, 2, "n")).toThrow(QueueFullError);
    // released seats are free again
    first.release();
    expect(first.remaining).toBe(0);
    expect(a.reserve(4, 4, "n").remaining).toBe(4);
  });

  it("answers a full queue with 429 queue_full and Retry-After", () => {
    const a = admission();
    const error = (() => {
      try {
        a.reserve(8, 1, "n");
      } catch (thrown) {
        return thrown;
      }
    })();
    expect(error).toBeInstanceOf(QueueFullError);
    const apiError = toApiError(error);
    expect([apiError.status, apiError.body.error.code, apiError.headers]).toEqual([
      429,
      "queue_full",
      { "retry-after": "1" },
    ]);
  });

  it("answers more completions than the server ever holds with 400, not a 429 to retry forever", () => {
    // Found by the reliability suite: 2000 prompts × n=16 got 429 queue_full.
    const a = admission();
    for (const param of ["prompt", "n"] as const) {
      const tooMany = () => a.reserve(0, 9, param);
      expect(tooMany).toThrow(TooManyCompletionsError);
      expect(tooMany).toThrow(
        "this request asks for 9 completions (prompts × n); this server runs at most 8 at once",
      );
      const apiError = toApiError(new TooManyCompletionsError("x", param));
      expect(apiError.status).toBe(400);
      expect(apiError.body.error).toMatchObject({ param, code: "invalid_value" });
    }
    // exactly the bound fits an idle server
    expect(a.reserve(0, 8, "n").remaining).toBe(8);
  });
});

describe("Admission.checkPromptText", () => {
  it("refuses a text that surely cannot fit before it is tokenized", () => {
    const a = admission();
    const tokenizer = byteLevelTokenizer();
    expect(() => a.checkPromptText("x".repeat(100), tokenizer)).not.toThrow();
    const huge = "x".repeat(1_000_000);
    expect(() => a.checkPromptText(huge, tokenizer)).toThrow(
      "This model's maximum context length is 100 tokens. However, your prompt of 1000000 characters is longer than that. Please reduce the length of the messages or prompt.",
    );
  });
});
