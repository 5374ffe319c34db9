// A pool full of adapters under KV pressure while clients come and go: with a pool of
// 3000 pages (the rank-64 adapter alone takes 2240), greedy streams over 12 adapters are
// evicted, preempted and recomputed, and each still gets exactly the text it gets alone;
// clients that leave mid-stream meanwhile change nothing for the others; afterwards
// nothing is left running, on KV pages or pinned.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamChat } from "../../bench/load/stream-client.ts";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { expectIdle, post, readMetrics } from "./backend-probe.ts";

const ADAPTERS = [
  "tiny-r64",
  "tiny-r16",
  "tiny-r8",
  "tiny-r4",
  ...Array.from({ length: 8 }, (_, i) => `tiny-mix-${String(i).padStart(2, "0")}`),
];
const REQUESTS = Array.from({ length: 36 }, (_, i) => ({
  model: ADAPTERS[i % ADAPTERS.length] ?? "tiny-llama",
  prompt: `request ${i}: ${"over the lazy dog ".repeat(1 + (i % 4))}`,
  // 32 running × ~60 tokens × 2 pages outgrow the 3000 pages even without an adapter:
  // decoding must preempt, whatever the timing
  max_tokens: 40,
  temperature: 0,
  ignore_eos: true,
}));

describe.skipIf(!haveFixtures)("adapters and KV fighting for a small pool", () => {
  let backend: Backend;

  beforeAll(async () => {
    backend = await startBackend(["--num-pages", "3000", "--max-num-seqs", "32"]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  const complete = async (request: (typeof REQUESTS)[number]) => {
    const response = await post(`${backend.url}/v1/completions`, request);
    const body = (await response.json()) as { choices: { text: string }[] };
    expect(response.status, JSON.stringify(body)).toBe(200);
    return body.choices[0]?.text ?? "";
  };

  it("evicts, preempts and recomputes without changing a greedy output, while clients leave", async () => {
    const alone: string[] = [];
    for (const request of REQUESTS) alone.push(await complete(request));
    const before = await readMetrics(backend.url);

    const leaving = Array.from({ length: 12 }, (_, i) =>
      streamChat(
        `${backend.url}/v1/chat/completions`,
        {
          model: ADAPTERS[(i * 5) % ADAPTERS.length],
          messages: [{ role: "user", content: `leaving ${i}` }],
          max_tokens: 200,
          ignore_eos: true,
        },
        { abortAfterChunks: 2 + (i % 4) },
      ),
    );
    const together = await Promise.all(REQUESTS.map(complete));
    await Promise.all(leaving);
    expect(together).toEqual(alone);
    expect(new Set(alone).size).toBeGreaterThan(ADAPTERS.length); // adapters matter

    const after = await readMetrics(backend.url);
    const grew = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    expect(grew("lorafleet_adapter_evictions_total")).toBeGreaterThan(0);
    expect(grew("lorafleet_preemptions_total")).toBeGreaterThan(0);
    await expectIdle(backend.url);
  });
});
