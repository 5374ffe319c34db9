// Adapter-aware admission under pool pressure, end to end (issue #20 item 9): 24
// concurrent requests over 7 adapters with room for 3 in the pool, in rounds. Admission
// takes queued requests on resident adapters first and evicts an adapter the queue still
// needs only for one needed sooner, so each adapter loads about once a round.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

const ADAPTERS = Array.from({ length: 7 }, (_, i) => `tiny-mix-${String(i).padStart(2, "0")}`);
const MAX_LORAS = 3;

async function metric(backend: Backend, name: string): Promise<number> {
  const text = await (await fetch(`${backend.url}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
}

/** A seeded linear congruential generator: the same rounds on every run. */
function lcg(seed: number): () => number {
  let state = seed;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

describe.skipIf(!haveFixtures)("24 concurrent requests over 7 adapters, --max-loras 3", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    backend = await startBackend(["--max-loras", String(MAX_LORAS), "--max-cpu-loras", "8"]);
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  it.each([1, 2, 3, 4])("loads each adapter about once per round (seed %i)", async (seed) => {
    const random = lcg(seed);
    const requests = Array.from({ length: 24 }, (_, i) => ({
      model: ADAPTERS[i < 7 ? i : Math.floor(random() * 7)] as string,
      prompt: `request ${i}: ${"the quick brown fox ".repeat(1 + Math.floor(random() * 5))}`,
    }));
    const loadsBefore = await metric(backend, "lorafleet_adapter_loads_total");
    const answers = await Promise.all(
      requests.map((r) =>
        client.completions.create({
          model: r.model,
          prompt: r.prompt,
          max_tokens: 8,
          temperature: 0,
          ignore_eos: true,
        } as OpenAI.CompletionCreateParamsNonStreaming),
      ),
    );
    expect(answers.map((a) => a.usage?.completion_tokens)).toEqual(requests.map(() => 8));
    const loads = (await metric(backend, "lorafleet_adapter_loads_total")) - loadsBefore;
    // Every adapter is named; those left resident by the round before need no load. At
    // most: one load each (what serving the round in arrival order from an empty pool
    // needs at least, all requests being queued at once) and one per other pool slot for
    // what running requests' pins cost (engine/adapter-admission.test.ts checks the same
    // bound over Belady's MIN). Before, 16-17 loads a round, once 137.
    expect(loads).toBeGreaterThanOrEqual(ADAPTERS.length - MAX_LORAS);
    expect(loads).toBeLessThanOrEqual(ADAPTERS.length + MAX_LORAS - 1);
  });
});
