// The host tier has one owner, the engine: with room for one adapter in the executor's
// host cache, requests for adapters that arrive together must both be served. The
// executor used to evict the first adapter on its own to fit the second (the engine's size
// estimate was 0 before the first stage), and the engine's load of the first then failed
// with unknown_adapter.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

// Rank 8 on all 7 modules of the tiny model: 280 pages of 32 float32 in 3 layers.
const RANK8_ALL_MODULES_BYTES = 3 * 280 * 32 * 4;

describe.skipIf(!haveFixtures)("a host tier with room for one adapter", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    backend = await startBackend([
      "--max-lora-rank",
      "8",
      "--host-cache-bytes",
      String(RANK8_ALL_MODULES_BYTES + 1000),
    ]);
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  const complete = async (model: string) => {
    const answer = await client.completions.create({
      model,
      prompt: "the quick brown fox",
      max_tokens: 6,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    return answer.choices[0]?.text ?? "";
  };

  it("serves requests for adapters that arrive together, each as it is served alone", async () => {
    // Every adapter of rank <= 8, twice: the host tier holds one of them at a time.
    const adapters = [
      "tiny-r8",
      "tiny-mix-01",
      "tiny-mix-04",
      "tiny-mix-05",
      "tiny-mix-09",
      "tiny-mix-13",
    ];
    const models = [...adapters, ...adapters];
    const together = await Promise.all(models.map(complete));
    const alone: string[] = [];
    for (const model of models) alone.push(await complete(model));
    expect(together).toEqual(alone);
    expect(alone[0]).not.toBe(alone[1]);
    expect(backend.logs()).not.toContain("unknown_adapter");
  });
});
