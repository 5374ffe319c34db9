// Backpressure and cancellation: a bounded queue answers 429 with Retry-After instead
// of piling up, and a client that goes away aborts its request in the engine.
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

describe.skipIf(!haveFixtures)("backpressure and cancellation", () => {
  let backend: Backend;
  let client: OpenAI;

  beforeAll(async () => {
    backend = await startBackend(["--max-num-seqs", "2", "--max-queued-requests", "2"]);
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: "unused", maxRetries: 0 });
  });
  afterAll(async () => {
    await backend?.stop();
  });

  const long = () =>
    client.completions.create({
      model: "tiny-llama",
      prompt: "keep going",
      max_tokens: 300,
      temperature: 0,
      ignore_eos: true,
    } as OpenAI.CompletionCreateParamsNonStreaming);

  it("refuses work beyond the queue bound with 429 and Retry-After", async () => {
    const outcomes = await Promise.allSettled(Array.from({ length: 8 }, long));
    const refused = outcomes.filter((o) => o.status === "rejected");
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(4);
    expect(refused).toHaveLength(4);
    for (const outcome of refused) {
      const error = (outcome as PromiseRejectedResult).reason as InstanceType<
        typeof OpenAI.APIError
      >;
      expect(error).toBeInstanceOf(OpenAI.RateLimitError);
      expect(error.code).toBe("queue_full");
      expect(Number(error.headers?.get("retry-after"))).toBeGreaterThan(0);
    }
  });

  it("aborts a streamed request when the client disconnects", async () => {
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      {
        model: "tiny-llama",
        messages: [{ role: "user", content: "talk forever" }],
        max_tokens: 900,
        temperature: 0,
        stream: true,
        ignore_eos: true,
      } as OpenAI.ChatCompletionCreateParamsStreaming,
      { signal: controller.signal },
    );
    let chunks = 0;
    // the openai client ends the iteration (or throws, by version) once aborted
    try {
      for await (const _ of stream) {
        if (++chunks === 5) controller.abort();
      }
    } catch {
      expect(controller.signal.aborted).toBe(true);
    }
    expect(chunks).toBeLessThan(20);
    const deadline = Date.now() + 10_000;
    let metrics = "";
    while (Date.now() < deadline) {
      metrics = await (await fetch(`${backend.url}/metrics`)).text();
      if (/lorafleet_requests_total\{finish_reason="abort"\} 1/.test(metrics)) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(metrics).toMatch(/lorafleet_requests_total\{finish_reason="abort"\} 1/);
    expect((await (await fetch(`${backend.url}/health`)).json()) as { load: number }).toMatchObject(
      { load: 0 },
    );
  });

  it("aborts a whole-answer request when the client disconnects", async () => {
    const controller = new AbortController();
    const pending = fetch(`${backend.url}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny-llama", prompt: "x", max_tokens: 900, ignore_eos: true }),
      signal: controller.signal,
    }).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 300));
    controller.abort();
    await pending;
    const deadline = Date.now() + 10_000;
    let load = -1;
    while (Date.now() < deadline && load !== 0) {
      load = ((await (await fetch(`${backend.url}/health`)).json()) as { load: number }).load;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(load).toBe(0);
    const metrics = await (await fetch(`${backend.url}/metrics`)).text();
    expect(metrics).toMatch(/lorafleet_requests_total\{finish_reason="abort"\} 2/);
  });
});
