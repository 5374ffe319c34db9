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

async function metric(backend: Backend, name: string): Promise<number> {
  const text = await (await fetch(`${backend.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
}

const SCENARIOS = [
  // Few pool slots for adapters: they are evicted and loaded again while requests run.
  { name: "adapter churn", args: ["--max-loras", "6", "--max-num-seqs", "32"], preempts: false },
  // A pool barely larger than the biggest adapter (rank 64 on all 7 modules, 2240
  // pages): KV growth and adapter loads fight for pages, requests are preempted.
  { name: "pool pressure", args: ["--num-pages", "3000", "--max-num-seqs", "32"], preempts: true },
];

for (const scenario of SCENARIOS) {
  describe.skipIf(!haveFixtures)(
    `64 concurrent requests over 16 adapters: ${scenario.name}`,
    () => {
      let backend: Backend;
      let client: OpenAI;

      beforeAll(async () => {
        // (later flags win over startBackend's --num-pages)
        backend = await startBackend(scenario.args);
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
        expect(await metric(backend, "lorafleet_adapter_evictions_total")).toBeGreaterThan(0);
        if (scenario.preempts) {
          expect(await metric(backend, "lorafleet_preemptions_total")).toBeGreaterThan(0);
        }
      });
    },
  );
}
