// Property-based fuzzing of the backend's request bodies against the real server, on
// every route that takes one (chat, completions, the gateway's internal batch, load and
// unload adapter): random JSON documents, random values under the real field names, and
// byte-mutated valid bodies never produce a 5xx; every answer is either a complete
// success or OpenAI's error shape (an internal batch line too); the process is idle and
// serving afterwards. Headers, raw HTTP and adapter paths: http-fuzz.test.ts.
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { edgyValue, fieldBody, mutatedBytes } from "../fuzz/openai-requests.ts";
import { expectIdle, expectServes, post } from "./backend-probe.ts";

/** Cases run in CI, per property (stated in the README's reliability figures). */
const RUNS = { documents: 1000, fields: 1500, batches: 600, bytes: 600 };

const SECRET = "request-fuzz-secret-0123456789";
const ROUTES = [
  "/v1/chat/completions",
  "/v1/completions",
  "/v1/load_lora_adapter",
  "/v1/unload_lora_adapter",
  "/internal/batch",
];
/** The fields of one internal batch item (api/src/internal-batch-request.ts). */
const ITEM_FIELDS = ["id", "endpoint", "tenant", "adapter", "deadline_ms", "body"];
const MODELS = ["tiny-llama", "tiny-r8", "tiny-r4", "nope", "../tiny-r8", ""];

/** An internal batch call of 1-3 items, each valid, then random fields set on it and its body. */
const batchBody = fc
  .array(
    fc.tuple(
      fieldBody(MODELS),
      fc.dictionary(fc.constantFrom(...ITEM_FIELDS), edgyValue, { maxKeys: 2 }),
      fc.string({ minLength: 1, maxLength: 8 }),
    ),
    { minLength: 1, maxLength: 3 },
  )
  .map((items) =>
    JSON.stringify({
      requests: items.map(([{ route, body }, fields, id]) => ({
        id,
        endpoint: route,
        tenant: "fuzz",
        body: JSON.parse(body),
        ...fields,
      })),
    }),
  );

describe.skipIf(!haveFixtures)("fuzzed requests never produce a 5xx", () => {
  let backend: Backend;

  beforeAll(async () => {
    // A short context bounds what any accepted request can cost.
    backend = await startBackend([
      "--max-model-len",
      "48",
      "--max-body-bytes",
      "65536",
      "--backend-secret",
      SECRET,
    ]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  /** Sends, reads the whole answer, and checks it is a success or a well-formed 4xx. */
  /** batch items answered 200: the fuzzing reached past the call's own schema */
  let servedBatchItems = 0;

  async function check(route: string, body: string | Uint8Array): Promise<void> {
    const response = await post(`${backend.url}${route}`, body, {
      authorization: `Bearer ${SECRET}`,
    });
    const text = await response.text();
    const what = `${route} ${String(body).slice(0, 300)} -> ${text.slice(0, 300)}`;
    expect(response.status, what).toBeLessThan(500);
    if (response.status >= 400) {
      expectErrorShape(JSON.parse(text));
    } else if (response.headers.get("content-type")?.startsWith("text/event-stream")) {
      expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
      expect(text).not.toContain('"error"');
    } else if (route === "/internal/batch") {
      for (const line of text.trim().split("\n")) {
        const { status, body: answer } = JSON.parse(line) as { status: number; body: unknown };
        expect(status, `${what}: ${line}`).toBeLessThan(500);
        if (status >= 400) expectErrorShape(answer);
        else servedBatchItems++;
      }
    }
  }

  function expectErrorShape(body: unknown): void {
    const error = (body as { error: Record<string, unknown> }).error;
    expect(typeof error.message).toBe("string");
    expect(typeof error.type).toBe("string");
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

  it(`internal batch calls with random values in their items and bodies (${RUNS.batches} cases)`, async () => {
    await fc.assert(
      fc.asyncProperty(batchBody, (body) => check("/internal/batch", body)),
      { numRuns: RUNS.batches },
    );
    expect(servedBatchItems).toBeGreaterThan(RUNS.batches / 100); // one run: 30 of ~1,200 items
  });

  it(`byte-mutated valid bodies of every route (${RUNS.bytes} cases)`, async () => {
    const chat = { model: "tiny-llama", messages: [{ role: "user", content: "hé 😀" }] };
    const valid: [string, object][] = [
      ["/v1/chat/completions", { ...chat, max_tokens: 3 }],
      ["/v1/completions", { model: "tiny-llama", prompt: [5, 6, 7], max_tokens: 3 }],
      [
        "/internal/batch",
        {
          requests: [{ id: "a", endpoint: "/v1/chat/completions", tenant: "t", body: chat }],
        },
      ],
      ["/v1/load_lora_adapter", { lora_name: "x", lora_path: "/tmp" }],
      ["/v1/unload_lora_adapter", { lora_name: "tiny-r8" }],
    ];
    const mutated = fc
      .constantFrom(...valid)
      .chain(([route, body]) =>
        fc.tuple(fc.constant(route), mutatedBytes(new TextEncoder().encode(JSON.stringify(body)))),
      );
    await fc.assert(
      fc.asyncProperty(mutated, ([route, bytes]) => check(route, bytes)),
      { numRuns: RUNS.bytes },
    );
  });

  it("is idle and serving after the fuzzing", async () => {
    await expectIdle(backend.url, 10_000, SECRET);
    await expectServes(backend.url, "tiny-llama", { authorization: `Bearer ${SECRET}` });
  });
});
