// Property-based fuzzing of the backend's request parsing against the real server: random
// JSON documents, random values under the real field names, and byte-mutated valid bodies
// never produce a 5xx; every answer is either a complete success or OpenAI's error shape;
// the process is idle and serving afterwards.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { fieldBody, mutatedBytes } from "../fuzz/openai-requests.ts";
import { expectIdle, expectServes, post } from "./backend-probe.ts";

/** Cases run in CI, per property (stated in the README's reliability figures). */
const RUNS = { documents: 500, fields: 1000, bytes: 300 };

const ROUTES = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/load_lora_adapter",
  "/v1/unload_lora_adapter",
];
const MODELS = ["tiny-llama", "tiny-r8", "tiny-r4", "nope", "../tiny-r8", ""];

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
      fc.asyncProperty(fieldBody(MODELS), ({ route, body }) => check(route, body)),
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
    await fc.assert(
      fc.asyncProperty(mutatedBytes(valid), (bytes) => check("/v1/chat/completions", bytes)),
      { numRuns: RUNS.bytes },
    );
  });

  it("is idle and serving after the fuzzing", async () => {
    await expectIdle(backend.url);
    await expectServes(backend.url);
  });
});
