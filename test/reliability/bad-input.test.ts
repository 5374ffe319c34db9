// The backend API under hostile input: each case gets its status and OpenAI's error shape,
// and the same process serves a normal request right after (real server, tiny model, real
// Python executor on CPU).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { expectIdle, expectOpenAIError, expectServes, post } from "./backend-probe.ts";

const MAX_MODEL_LEN = 256;
const MAX_BODY_BYTES = 1024 * 1024;
const chat = (extra: object) => ({
  model: "tiny-llama",
  messages: [{ role: "user", content: "hi" }],
  max_tokens: 2,
  ...extra,
});
const completion = (extra: object) => ({
  model: "tiny-llama",
  prompt: "hi",
  max_tokens: 2,
  ...extra,
});
const utf8 = (text: string) => new TextEncoder().encode(text);

interface Case {
  name: string;
  path?: string;
  body: unknown;
  headers?: Record<string, string>;
  status: number;
  code?: string | null;
  param?: string | null;
}

const CASES: Case[] = [
  // the body itself
  { name: "malformed JSON", body: '{"model":', status: 400, code: "invalid_json" },
  { name: "empty body", body: "", status: 400, code: "invalid_json" },
  {
    name: "NaN literal",
    body: '{"model":"tiny-llama","temperature":NaN}',
    status: 400,
    code: "invalid_json",
  },
  { name: "a JSON array", body: "[1,2]", status: 400, code: "invalid_value" },
  { name: "JSON null", body: "null", status: 400, code: "invalid_value" },
  { name: "100k-deep nesting", body: `${"[".repeat(100_000)}${"]".repeat(100_000)}`, status: 400 },
  {
    name: "invalid UTF-8 bytes",
    body: new Uint8Array([
      ...utf8('{"model":"tiny-llama","messages":[{"role":"user","content":"'),
      0xff,
      0xfe,
      0xc3,
      ...utf8('"}]}'),
    ]),
    status: 400,
    code: "invalid_json",
  },
  {
    name: "oversized body (declared length)",
    body: JSON.stringify(completion({ prompt: "x".repeat(MAX_BODY_BYTES) })),
    status: 413,
    code: "request_too_large",
  },
  {
    name: "oversized body (chunked, no length)",
    body: "chunked",
    status: 413,
    code: "request_too_large",
  },
  // wrong types and values
  { name: "messages not a list", body: chat({ messages: "hi" }), status: 400, param: "messages" },
  { name: "empty messages", body: chat({ messages: [] }), status: 400, param: "messages" },
  {
    name: "unknown role",
    body: chat({ messages: [{ role: "wizard", content: "x" }] }),
    status: 400,
    param: "messages[0].role",
  },
  {
    name: "image content part",
    body: chat({
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }],
    }),
    status: 400,
    param: "messages[0].content",
  },
  {
    name: "model missing",
    body: { messages: [{ role: "user", content: "x" }] },
    status: 400,
    param: "model",
  },
  { name: "model a number", body: chat({ model: 7 }), status: 400, param: "model" },
  { name: "max_tokens 0", body: chat({ max_tokens: 0 }), status: 400, param: "max_tokens" },
  { name: "max_tokens 1.5", body: chat({ max_tokens: 1.5 }), status: 400, param: "max_tokens" },
  {
    name: "max_tokens a string",
    body: chat({ max_tokens: "10" }),
    status: 400,
    param: "max_tokens",
  },
  {
    name: "huge max_tokens",
    body: chat({ max_tokens: 1e12 }),
    status: 400,
    code: "context_length_exceeded",
  },
  { name: "n too large", body: chat({ n: 17 }), status: 400, param: "n" },
  { name: "n 0", body: chat({ n: 0 }), status: 400, param: "n" },
  {
    name: "prompts × n over capacity",
    path: "/v1/completions",
    body: completion({ prompt: Array(200).fill("hi"), n: 16 }),
    status: 400,
    param: "prompt",
  },
  {
    name: "negative temperature",
    body: chat({ temperature: -1 }),
    status: 400,
    param: "temperature",
  },
  {
    name: "temperature overflowing to Infinity",
    body: '{"model":"tiny-llama","messages":[{"role":"user","content":"hi"}],"temperature":1e400}',
    status: 400,
    param: "temperature",
  },
  { name: "top_p 0", body: chat({ top_p: 0 }), status: 400, param: "top_p" },
  { name: 'top_p "NaN"', body: chat({ top_p: "NaN" }), status: 400, param: "top_p" },
  // values that would not survive the float32 / int32 step plan (the fuzzer's find)
  { name: "top_p 1e-46 (0 as float32)", body: chat({ top_p: 1e-46 }), status: 400 },
  { name: "repetition_penalty 5e-324", body: chat({ repetition_penalty: 5e-324 }), status: 400 },
  { name: "top_k 2^31", body: chat({ top_k: 2 ** 31 }), status: 400 },
  {
    name: "presence_penalty 5",
    body: chat({ presence_penalty: 5 }),
    status: 400,
    param: "presence_penalty",
  },
  { name: "negative seed", body: chat({ seed: -1 }), status: 400, param: "seed" },
  { name: "seed past 2^53", body: chat({ seed: 2 ** 60 }), status: 400, param: "seed" },
  {
    name: "top_logprobs 21",
    body: chat({ logprobs: true, top_logprobs: 21 }),
    status: 400,
    param: "top_logprobs",
  },
  {
    name: "17 stop strings",
    body: chat({ stop: Array(17).fill("x") }),
    status: 400,
    param: "stop",
  },
  {
    name: "stream_options a string",
    body: chat({ stream: true, stream_options: "yes" }),
    status: 400,
    param: "stream_options",
  },
  // unsupported parameters: refused by name, never silently ignored
  // structured outputs and tools: a 400 naming what and where, never an unconstrained answer
  {
    name: "invalid JSON Schema (a type that does not exist)",
    body: chat({
      response_format: {
        type: "json_schema",
        json_schema: {
          name: "a",
          schema: { type: "object", properties: { n: { type: "nmber" } } },
        },
      },
    }),
    status: 400,
    code: "invalid_schema",
    param: "response_format.json_schema.schema",
  },
  {
    name: "a keyword llguidance cannot enforce (uniqueItems)",
    body: chat({
      response_format: {
        type: "json_schema",
        json_schema: { name: "a", schema: { type: "array", uniqueItems: true } },
      },
    }),
    status: 400,
    code: "grammar_invalid",
    param: "response_format.json_schema.schema",
  },
  {
    name: "overlapping oneOf (never approximated by anyOf)",
    body: chat({
      structured_outputs: { json: { oneOf: [{ type: "integer" }, { type: "number" }] } },
    }),
    status: 400,
    code: "grammar_invalid",
    param: "structured_outputs.json",
  },
  {
    name: "a remote $ref",
    body: chat({ structured_outputs: { json: { $ref: "https://example.com/s.json" } } }),
    status: 400,
    code: "grammar_invalid",
  },
  {
    name: "a regex with look-around",
    body: chat({ structured_outputs: { regex: "(?=a)b" } }),
    status: 400,
    code: "grammar_invalid",
    param: "structured_outputs.regex",
  },
  {
    name: "a grammar that is neither Lark nor GBNF",
    path: "/v1/completions",
    body: completion({ structured_outputs: { grammar: "root ::= undefined_rule" } }),
    status: 400,
    code: "grammar_invalid",
    param: "structured_outputs.grammar",
  },
  {
    name: "a schema over the stated size (64 KiB)",
    body: chat({
      response_format: {
        type: "json_schema",
        json_schema: { name: "a", schema: { type: "string", description: "x".repeat(70_000) } },
      },
    }),
    status: 400,
    code: "schema_too_large",
  },
  {
    name: "more tools than the stated 128",
    body: chat({
      tools: Array.from({ length: 129 }, (_, i) => ({
        type: "function",
        function: { name: `f${i}` },
      })),
    }),
    status: 400,
    param: "tools",
  },
  {
    name: "unknown tool name in tool_choice",
    body: chat({
      tools: [{ type: "function", function: { name: "f" } }],
      tool_choice: { type: "function", function: { name: "g" } },
    }),
    status: 400,
    code: "unknown_tool",
    param: "tool_choice",
  },
  {
    name: "structured_outputs regex beside tools",
    body: chat({
      tools: [{ type: "function", function: { name: "f" } }],
      structured_outputs: { regex: "[a-z]+" },
    }),
    status: 400,
    code: "unsupported_parameter",
    param: "structured_outputs.regex",
  },
  {
    name: "structured_outputs.structural_tag",
    body: chat({ structured_outputs: { structural_tag: { type: "x" } } }),
    status: 400,
    code: "unsupported_parameter",
  },
  {
    name: "logit_bias",
    body: chat({ logit_bias: { "5": 100 } }),
    status: 400,
    code: "unsupported_parameter",
    param: "logit_bias",
  },
  {
    name: "echo",
    path: "/v1/completions",
    body: completion({ echo: true }),
    status: 400,
    param: "echo",
  },
  {
    name: "best_of 3",
    path: "/v1/completions",
    body: completion({ best_of: 3 }),
    status: 400,
    param: "best_of",
  },
  // prompts
  {
    name: "prompt longer than the context",
    path: "/v1/completions",
    body: completion({ prompt: "word ".repeat(400) }),
    status: 400,
    code: "context_length_exceeded",
  },
  {
    name: "900 KB prompt text",
    path: "/v1/completions",
    body: completion({ prompt: "hello world ".repeat(75_000) }),
    status: 400,
    code: "context_length_exceeded",
  },
  {
    name: "10k chat messages",
    body: chat({ messages: Array(10_000).fill({ role: "user", content: "hi" }) }),
    status: 400,
    code: "context_length_exceeded",
  },
  {
    name: "empty prompt text",
    path: "/v1/completions",
    body: completion({ prompt: "" }),
    status: 400,
  },
  {
    name: "empty prompt list",
    path: "/v1/completions",
    body: completion({ prompt: [] }),
    status: 400,
    param: "prompt",
  },
  {
    name: "token id outside the vocabulary",
    path: "/v1/completions",
    body: completion({ prompt: [99_999] }),
    status: 400,
  },
  {
    name: "fractional token id",
    path: "/v1/completions",
    body: completion({ prompt: [1.5] }),
    status: 400,
    param: "prompt",
  },
  {
    name: "stop token id outside the vocabulary",
    path: "/v1/completions",
    body: completion({ stop_token_ids: [99_999] }),
    status: 400,
  },
  // models and adapter names
  {
    name: "unknown model",
    body: chat({ model: "no-such-adapter" }),
    status: 404,
    code: "model_not_found",
  },
  {
    name: "path traversal ../../etc",
    body: chat({ model: "../../etc" }),
    status: 404,
    code: "model_not_found",
  },
  {
    name: "path traversal to a real adapter",
    body: chat({ model: "../adapters/tiny-r8" }),
    status: 404,
    code: "model_not_found",
  },
  {
    name: "absolute path as model",
    body: chat({ model: "/etc/passwd" }),
    status: 404,
    code: "model_not_found",
  },
  { name: "dot-file name", body: chat({ model: ".remote" }), status: 404, code: "model_not_found" },
  {
    name: "load_lora_adapter ../../etc",
    path: "/v1/load_lora_adapter",
    body: { lora_name: "../../etc" },
    status: 404,
    code: "model_not_found",
  },
  {
    name: "load_lora_adapter path without config",
    path: "/v1/load_lora_adapter",
    body: { lora_name: "x", lora_path: "/etc" },
    status: 400,
    code: "adapter_invalid",
  },
  // the gateway's surface without the secret
  {
    name: "lorafleet field without a secret",
    body: chat({ lorafleet: { tenant: "t" } }),
    status: 401,
  },
  {
    name: "/internal/batch without a secret",
    path: "/internal/batch",
    body: { requests: [] },
    status: 401,
  },
  {
    name: "unknown route",
    path: "/v1/embeddings",
    body: { input: "x" },
    status: 404,
    code: "not_found",
  },
];

describe.skipIf(!haveFixtures)("bad input to the backend API", () => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await startBackend([
      "--max-model-len",
      String(MAX_MODEL_LEN),
      "--max-body-bytes",
      String(MAX_BODY_BYTES),
      "--max-num-seqs",
      "16",
      "--max-queued-requests",
      "64",
    ]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  it.each(CASES)(
    "$name: $status, OpenAI error shape, and the next request is served",
    async (c) => {
      const url = `${backend.url}${c.path ?? "/v1/chat/completions"}`;
      const body =
        c.body === "chunked"
          ? new ReadableStream<Uint8Array>({
              start(controller) {
                // 64 KiB chunks past the bound, with no content-length header
                for (let sent = 0; sent <= MAX_BODY_BYTES; sent += 65_536)
                  controller.enqueue(new Uint8Array(65_536).fill(0x20));
                controller.close();
              },
            })
          : c.body;
      const started = performance.now();
      const error = await expectOpenAIError(await post(url, body, c.headers), c.status, {
        ...(c.code === undefined ? {} : { code: c.code }),
        ...(c.param === undefined ? {} : { param: c.param }),
      });
      // no internal request ids in what the client reads
      expect(error.message).not.toMatch(/req-\d+/);
      // Refusals are cheap: none of them tokenizes megabytes or waits on the model.
      expect(performance.now() - started).toBeLessThan(2_000);
      await expectServes(backend.url);
    },
  );

  it("streams nothing for a refused streamed request: the status says it", async () => {
    await expectOpenAIError(
      await post(`${backend.url}/v1/chat/completions`, chat({ stream: true, model: "nope" })),
      404,
      { code: "model_not_found" },
    );
    await expectOpenAIError(
      await post(`${backend.url}/v1/chat/completions`, chat({ stream: true, n: 99 })),
      400,
      { param: "n" },
    );
  });

  it("reads a slow client to the end and keeps serving others meanwhile", async () => {
    const response = await post(
      `${backend.url}/v1/chat/completions`,
      chat({ stream: true, max_tokens: 40, ignore_eos: true, temperature: 0 }),
    );
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      // a reader far slower than the model; others are served in the meantime
      await new Promise((resolve) => setTimeout(resolve, 30));
      if (text.length < 400) await expectServes(backend.url);
    }
    expect(text).toContain("data: [DONE]");
    expect(text.match(/"finish_reason":"length"/g)).toHaveLength(1);
  });

  it("is idle after all of it: nothing running, no KV pages, no adapter pins", async () => {
    await expectIdle(backend.url);
    expect(backend.process.exitCode).toBeNull();
  });
});
