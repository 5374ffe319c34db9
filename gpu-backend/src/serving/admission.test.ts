// Admission as a function of state: no engine, no executor, no clock. Each refusal is
// checked as the client sees it (status, OpenAI error body, headers): the e2e and
// reliability suites assert the same.
import { describe, expect, it } from "vitest";
import { toApiError } from "../server/openai-error.ts";
import { byteLevelTokenizer } from "../tokenizer/testing/byte-level-tokenizer.ts";
import { Admission, contextLength, type Phase } from "./admission.ts";

const admission = () => new Admission({ maxModelLen: 100, maxUnfinished: 8 });
const request = (promptLength: number, maxTokens: number | null) => ({ promptLength, maxTokens });

/** What a client gets for the error `refused` throws. */
function answer(refused: () => unknown) {
  try {
    refused();
  } catch (error) {
    const { status, body, headers } = toApiError(error);
    return { status, ...body.error, headers };
  }
  throw new Error("expected a refusal");
}

/** The answer OpenAI's API gives for such an error. */
const openAIError = (
  status: number,
  code: string,
  message: string,
  extra: { type?: string; param?: string | null; headers?: Record<string, string> } = {},
) => ({
  status,
  message,
  type: extra.type ?? "invalid_request_error",
  param: extra.param ?? null,
  code,
  headers: extra.headers ?? {},
});
const retryAfter = { "retry-after": "1" };

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
    const seats = a.reserve(0, 3, "n");
    expect(a.admit("serving", request(30, 70), seats)).toBe(70);
    expect(a.admit("serving", request(30, null), seats)).toBe(70);
    expect(a.admit("serving", request(99, null), seats)).toBe(1);
  });

  it("refuses a prompt + completion over the context: 400 context_length_exceeded", () => {
    const a = admission();
    const seats = a.reserve(0, 1, "n");
    const tooLong = (requested: string) =>
      openAIError(
        400,
        "context_length_exceeded",
        `This model's maximum context length is 100 tokens. However, you requested ${requested}. Please reduce the length of the messages or completion.`,
        { param: "messages" },
      );
    expect(answer(() => a.admit("serving", request(30, 71), seats))).toEqual(
      tooLong("101 tokens (30 in the messages, 71 in the completion)"),
    );
    // no room left for even one token
    expect(answer(() => a.admit("serving", request(100, null), seats))).toEqual(
      tooLong("101 tokens (100 in the messages, 1 in the completion)"),
    );
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
      expect(answer(() => a.admit(phase, request(1000, null), seats))).toEqual(
        openAIError(503, "backend_unavailable", message, {
          type: "server_error",
          headers: retryAfter,
        }),
      );
    }
  });

  it("needs a seat left in the reservation", () => {
    const a = admission();
    const seats = a.reserve(0, 1, "n");
    seats.take();
    expect(() => a.admit("serving", request(1, 1), seats)).toThrow("no reserved seat left");
  });
});

describe("Admission.reserve", () => {
  const queueFull = (message: string) =>
    openAIError(429, "queue_full", message, { type: "rate_limit_error", headers: retryAfter });

  it("holds all the seats or none, and counts held seats against the bound: 429 queue_full", () => {
    const a = admission();
    const first = a.reserve(3, 4, "n"); // 3 unfinished + 4 held = 7 of 8
    expect(first.remaining).toBe(4);
    expect(answer(() => a.reserve(3, 2, "n"))).toEqual(
      queueFull(
        "The server has 7 requests in progress and room for 8; this one needs 2. Retry later.",
      ),
    );
    // a taken seat is an unfinished request now: the caller counts it there
    first.take();
    expect(answer(() => a.reserve(4, 2, "n"))).toEqual(
      queueFull(
        "The server has 7 requests in progress and room for 8; this one needs 2. Retry later.",
      ),
    );
    // released seats are free again
    first.release();
    expect(first.remaining).toBe(0);
    expect(a.reserve(4, 4, "n").remaining).toBe(4);
  });

  it("answers more completions than the server ever holds with 400, not a 429 to retry forever", () => {
    // Found by the reliability suite: 2000 prompts × n=16 got 429 queue_full.
    const a = admission();
    for (const param of ["prompt", "n"] as const) {
      expect(answer(() => a.reserve(0, 9, param))).toEqual(
        openAIError(
          400,
          "invalid_value",
          "this request asks for 9 completions (prompts × n); this server runs at most 8 at once",
          { param },
        ),
      );
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
    expect(answer(() => a.checkPromptText("x".repeat(1_000_000), tokenizer))).toEqual(
      openAIError(
        400,
        "context_length_exceeded",
        "This model's maximum context length is 100 tokens. However, your prompt of 1000000 characters is longer than that. Please reduce the length of the messages or prompt.",
        { param: "messages" },
      ),
    );
  });
});
