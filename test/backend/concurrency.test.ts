// Heterogeneous batching end to end: 64 concurrent greedy requests over 16 adapters of
// mixed ranks must each give exactly what the same request gives alone.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

const ADAPTERS = Array.from({ length: 16 }, (_, i) => `tiny-mix-${String(i).padStart(2, "0")}`);
const REQUESTS = Array.from({ length: 64 }, (_, i) => ({
  model: ADAPTERS[i % ADAPTERS.length] ?? "tiny-llama",
  prompt: `request ${i}: ${"the quick brown fox ".repeat(1 + (i % 5))}`,
}));

describe.skipIf(!haveFixtures)("64 concurrent requests over 16 adapters", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    // A small pool, so adapters are evicted and loaded again while requests run.
    backend = await startBackend(["--max-loras", "6", "--max-num-seqs", "32"]);
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  const complete = async (request: (typeof REQUESTS)[number]) => {
    const answer = await client.completions.create({
      model: request.model,
      prompt: request.prompt,
      max_tokens: 10,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);
    return answer.choices[0]?.text ?? "";
  };

  it("gives each request the output it gets alone", async () => {
    const alone: string[] = [];
    for (const request of REQUESTS) alone.push(await complete(request));
    const together = await Promise.all(REQUESTS.map(complete));
    expect(together).toEqual(alone);
    // the adapters do change the output, so the comparison above means something
    expect(new Set(alone).size).toBeGreaterThan(16);
  });
});
