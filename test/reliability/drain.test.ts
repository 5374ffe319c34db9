// Graceful shutdown: on SIGTERM the backend refuses new requests with a retriable 503
// (and /ready 503, which the gateway's health check reads), lets the running streams
// finish within --drain-timeout-s, then exits 0; past the deadline it cuts what is left
// with a retriable error event instead of hanging.
import { afterEach, describe, expect, it } from "vitest";
import { type StreamOutcome, streamChat } from "../../bench/load/stream-client.ts";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { expectOpenAIError, post } from "./backend-probe.ts";

const stream = (backend: Backend, i: number, maxTokens: number) =>
  streamChat(`${backend.url}/v1/chat/completions`, {
    model: i % 2 === 0 ? "tiny-llama" : "tiny-r8",
    messages: [{ role: "user", content: `stream ${i}` }],
    max_tokens: maxTokens,
    temperature: 0,
    ignore_eos: true,
  });

/** Resolves once the backend has streamed a first token to each of `count` clients. */
async function untilStreaming(backend: Backend, count: number): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const text = await (await fetch(`${backend.url}/metrics`)).text();
    const running = Number(/^lorafleet_running_requests (\S+)$/m.exec(text)?.[1] ?? 0);
    const tokens = Number(/^lorafleet_generated_tokens_total (\S+)$/m.exec(text)?.[1] ?? 0);
    if (running === count && tokens >= count) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("the streams never ran");
}

const exited = (backend: Backend) =>
  new Promise<number | null>((resolve) => {
    if (backend.process.exitCode !== null) resolve(backend.process.exitCode);
    else backend.process.once("exit", (code) => resolve(code));
  });

describe.skipIf(!haveFixtures)("SIGTERM drains", () => {
  let backend: Backend | undefined;
  afterEach(async () => {
    await backend?.stop();
    backend = undefined;
  });

  it("finishes running streams, refuses new requests with a retriable 503, exits 0", async () => {
    backend = await startBackend(["--drain-timeout-s", "30"]);
    const running = Array.from({ length: 6 }, (_, i) => stream(backend as Backend, i, 150));
    await untilStreaming(backend, 6);
    const exit = exited(backend);
    const signalledAt = performance.now();
    backend.process.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 100));

    expect((await fetch(`${backend.url}/ready`)).status).toBe(503);
    // the gateway's health check reads /health: draining is unhealthy, routed around
    const health = await fetch(`${backend.url}/health`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: "draining", load: 6 });
    const refused = await post(`${backend.url}/v1/completions`, {
      model: "tiny-llama",
      prompt: "late",
      max_tokens: 2,
    });
    expect(refused.headers.get("retry-after")).not.toBeNull();
    await expectOpenAIError(refused, 503, { code: "backend_unavailable" });

    for (const outcome of await Promise.all(running)) {
      expect(outcome.errorEvent).toBeNull();
      expect(outcome.done).toBe(true);
      expect(outcome.usage?.completion_tokens).toBe(150);
    }
    expect(await exit).toBe(0);
    expect(performance.now() - signalledAt).toBeLessThan(30_000);
  });

  it("cuts what is left at the deadline with a retriable error event, and exits", async () => {
    backend = await startBackend(["--drain-timeout-s", "1"]);
    const running = Array.from({ length: 4 }, (_, i) => stream(backend as Backend, i, 1000));
    await untilStreaming(backend, 4);
    const exit = exited(backend);
    const signalledAt = performance.now();
    backend.process.kill("SIGTERM");
    const outcomes: StreamOutcome[] = await Promise.all(running);
    expect(await exit).toBe(0);
    // 1 s of drain, then the executor's shutdown
    expect(performance.now() - signalledAt).toBeLessThan(10_000);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe(200);
      expect(outcome.usage?.completion_tokens ?? 0).toBeLessThan(1000);
      // told, not left hanging: an error event the client can retry on
      expect(outcome.errorEvent?.code).toBe("backend_unavailable");
    }
  });
});
