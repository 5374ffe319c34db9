// Property-based fuzzing of the backend's request parsing against the real server: random
// JSON documents, random values under the real field names, and byte-mutated valid bodies
// never produce a 5xx; every answer is either a complete success or OpenAI's error shape;
// the process is idle and serving afterwards.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { expectIdle, expectServes, post } from "./backend-probe.ts";

/** Cases run in CI, per property (stated in the README's reliability figures). */
const RUNS = { documents: 500, fields: 1000, bytes: 300 };

const ROUTES = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/load_lora_adapter",
  "/v1/unload_lora_adapter",
];
const FIELDS = [
  "model",
  "messages",
  "prompt",
  "max_tokens",
  "max_completion_tokens",
  "n",
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "seed",
  "presence_penalty",
  "frequency_penalty",
  "repetition_penalty",
  "stop",
  "stop_token_ids",
  "stream",
  "stream_options",
  "logprobs",
  "top_logprobs",
  "ignore_eos",
  "echo",
  "best_of",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "functions",
  "function_call",
  "response_format",
  "structured_outputs",
  "logit_bias",
  "lorafleet",
  "lora_name",
  "lora_path",
];
const MODELS = ["tiny-llama", "tiny-r8", "tiny-r4", "nope", "../tiny-r8", ""];

/** Random JSON-Schema-like documents: valid ones, broken ones, keywords no engine enforces. */
const schemaish = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.record(
    {
      type: fc.constantFrom("object", "string", "integer", "array", "strng", 5),
      properties: fc.dictionary(fc.string({ maxLength: 4 }), fc.jsonValue({ maxDepth: 2 }), {
        maxKeys: 3,
      }),
      uniqueItems: fc.boolean(),
      pattern: fc.constantFrom("^a+$", "(?=x)", "[", "\\d{2,}"),
      $ref: fc.constantFrom("#/$defs/x", "https://example.com/s", "#"),
    },
    { requiredKeys: ["type"] },
  ),
);

/** Ways to constrain an output or call tools, right and wrong. */
const constraint = fc.oneof(
  schemaish.map((schema) => ({ type: "json_schema", json_schema: { name: "s", schema } })),
  fc.record({ json: schemaish }),
  fc.record({ regex: fc.string({ maxLength: 12 }) }),
  fc.record({ grammar: fc.string({ maxLength: 24 }) }),
  fc.record({ choice: fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }) }),
  fc.array(
    fc.record({
      type: fc.constantFrom("function", "retrieval"),
      function: fc.record({ name: fc.constantFrom("f", "g", "a b", ""), parameters: schemaish }),
    }),
    { maxLength: 3 },
  ),
  fc.constantFrom("none", "auto", "required", { type: "function", function: { name: "f" } }),
);

/** Values that sit near the edges the schema checks. */
const edgy = fc.oneof(
  constraint,
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom(0, -1, 1, 2, 16, 17, 20, 21, 64, 1e9, 2 ** 53, -0.5, 0.5, 1.5, 1e308),
  // the edges of the float32 / int32 step plan: denormals, int32 wrap
  fc.constantFrom(5e-324, 1e-46, 1e-39, 2 ** 31 - 1, 2 ** 31, 2 ** 32, -(2 ** 31), 3.4e38, 3.5e38),
  fc.constantFrom("", "tiny-llama", "tiny-r8", "\u0000", "😀", "a".repeat(300)),
  fc.array(fc.integer({ min: -5, max: 1000 }), { maxLength: 8 }),
  fc.array(
    fc.record({
      role: fc.constantFrom("user", "system", "bot", 3),
      content: fc.oneof(
        fc.string(),
        fc.constant(null),
        fc.array(fc.record({ type: fc.constantFrom("text", "image_url"), text: fc.string() }), {
          maxLength: 2,
        }),
      ),
    }),
    { maxLength: 3 },
  ),
);

/** A body that is valid, then has random fields set to random (often wrong) values. */
const fieldBody = fc
  .tuple(
    fc.constantFrom(...MODELS),
    fc.dictionary(fc.constantFrom(...FIELDS), edgy, { maxKeys: 5 }),
    fc.boolean(),
  )
  .map(([model, fields, chat]) => ({
    route: chat ? "/v1/chat/completions" : "/v1/completions",
    body: JSON.stringify({
      model,
      ...(chat ? { messages: [{ role: "user", content: "hi" }] } : { prompt: "hi" }),
      max_tokens: 4,
      ...fields,
    }),
  }));

describe.skipIf(!haveFixtures)("fuzzed requests never produce a 5xx", () => {
  let backend: Backend;

  beforeAll(async () => {
    // A short context bounds what any accepted request can cost.
    backend = await startBackend(["--max-model-len", "48", "--max-body-bytes", "65536"]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  /** Sends, reads the whole answer, and checks it is a success or a well-formed 4xx. */
  async function check(route: string, body: string | Uint8Array): Promise<void> {
    const response = await post(`${backend.url}${route}`, body);
    const text = await response.text();
    expect(
      response.status,
      `${route} ${String(body).slice(0, 300)} -> ${text.slice(0, 300)}`,
    ).toBeLessThan(500);
    if (response.status >= 400) {
      const error = (JSON.parse(text) as { error: Record<string, unknown> }).error;
      expect(typeof error.message).toBe("string");
      expect(typeof error.type).toBe("string");
    } else if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
      expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
      expect(text).not.toContain('"error"');
    }
  }

  it(`random JSON documents (${RUNS.documents} cases)`, async () => {
    await fc.assert(fc.asyncProperty(fc.constantFrom(...ROUTES), fc.json({ maxDepth: 4 }), check), {
      numRuns: RUNS.documents,
    });
  });

  it(`random values under the real field names (${RUNS.fields} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(fieldBody, ({ route, body }) => check(route, body)),
      { numRuns: RUNS.fields },
    );
  });

  it(`byte-mutated valid bodies (${RUNS.bytes} cases)`, async () => {
    const valid = new TextEncoder().encode(
      JSON.stringify({
        model: "tiny-llama",
        messages: [{ role: "user", content: "hé 😀" }],
        max_tokens: 3,
      }),
    );
    const mutation = fc.array(
      fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })),
      { minLength: 1, maxLength: 4 },
    );
    await fc.assert(
      fc.asyncProperty(mutation, (edits) => {
        const bytes = Uint8Array.from(valid);
        for (const [at, value] of edits) bytes[at] = value;
        return check("/v1/chat/completions", bytes);
      }),
      { numRuns: RUNS.bytes },
    );
  });

  it("is idle and serving after the fuzzing", async () => {
    await expectIdle(backend.url);
    await expectServes(backend.url);
  });
});
