// Faults with one backend: clients that leave mid-stream (and mid-prefill) free every
// request, KV page and adapter pin; the Python executor killed mid-batch is replaced and
// new requests are served within a stated bound, with nothing left behind.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { streamChat } from "../../bench/load/stream-client.ts";
import { type Backend, haveFixtures, startBackend } from "../backend/backend-process.ts";
import { expectIdle, expectServes, readMetrics } from "./backend-probe.ts";

/** A new request must be served this soon after the executor is killed (CPU, tiny model). */
const RECOVERY_BOUND_MS = 20_000;
const ADAPTERS = ["tiny-llama", "tiny-r4", "tiny-r8", "tiny-r16", "tiny-mix-00", "tiny-mix-01"];

const longChat = (i: number) => ({
  model: ADAPTERS[i % ADAPTERS.length],
  messages: [{ role: "user", content: `client ${i}: keep talking` }],
  max_tokens: 400,
  temperature: 0,
  ignore_eos: true,
});

describe.skipIf(!haveFixtures)("clients leaving and the executor dying", () => {
  let backend: Backend;
  const chatUrl = () => `${backend.url}/v1/chat/completions`;
  const aborted = async () =>
    (await readMetrics(backend.url)).get('lorafleet_requests_total{finish_reason="abort"}') ?? 0;
  /** A client that gives up on `body` after `ms`; its answer, if one came (null if not). */
  const leavingAfter = async (ms: number, body: object) => {
    const response = await fetch(chatUrl(), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(ms),
    }).catch(() => null);
    return response?.text().catch(() => null) ?? null;
  };

  beforeAll(async () => {
    backend = await startBackend(["--max-num-seqs", "32"]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  it("frees every request, KV page and adapter pin when 32 clients leave mid-stream or before it", async () => {
    const before = await aborted();
    // two thirds leave after a few chunks, one third before the first (mid-prefill/queue)
    const outcomes = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        streamChat(chatUrl(), longChat(i), { abortAfterChunks: i % 3 === 0 ? 0 : 3 + (i % 5) }),
      ),
    );
    for (const outcome of outcomes) {
      expect(outcome.status).toBe(200);
      expect(outcome.done).toBe(false);
    }
    // and 8 that give up after 5 to 75 ms: before the headers (queued, in prefill) or just after
    const gaveUp = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        leavingAfter(5 + i * 10, { ...longChat(i), stream: true }),
      ),
    );
    expect(gaveUp).toEqual(Array(8).fill(null));
    await expectIdle(backend.url, 10_000);
    const after = await aborted();
    // every admitted one was aborted (one that left before admission never counted)
    expect(after).toBeGreaterThanOrEqual(before + 24);
    expect(after).toBeLessThanOrEqual(before + 32);
    await expectServes(backend.url, "tiny-r8");
  });

  it("ends non-streamed requests in the engine when their clients leave mid-generation", async () => {
    const before = await aborted();
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => leavingAfter(400 + i * 50, longChat(i))),
    );
    // none came back: each answer of 400 tokens was cut off by its client
    expect(answers).toEqual(Array(8).fill(null));
    await expectIdle(backend.url, 10_000);
    expect(await aborted()).toBe(before + 8);
    await expectServes(backend.url, "tiny-r8");
  });

  it(`replaces a killed executor and serves new requests within ${RECOVERY_BOUND_MS / 1000} s; nothing leaks`, async () => {
    const executors = backend.childPids();
    expect(executors.length).toBeGreaterThan(0);
    const inFlight = Array.from({ length: 16 }, (_, i) =>
      streamChat(chatUrl(), { ...longChat(i), max_tokens: 200 }, { timeoutMs: 90_000 }),
    );
    // let them start decoding
    await new Promise((resolve) => setTimeout(resolve, 500));
    const killedAt = performance.now();
    for (const pid of executors) process.kill(pid, "SIGKILL");

    // A client retrying every 200 ms: how long until it is served?
    let recoveredMs = Number.NaN;
    while (performance.now() - killedAt < RECOVERY_BOUND_MS) {
      const response = await fetch(chatUrl(), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...longChat(1), max_tokens: 2 }),
      });
      await response.text();
      if (response.status === 200) {
        recoveredMs = performance.now() - killedAt;
        break;
      }
      // while the executor restarts: a retriable 503 with Retry-After, nothing else
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).not.toBeNull();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(recoveredMs).toBeLessThan(RECOVERY_BOUND_MS);
    console.log(
      `[reliability] executor killed: new requests served after ${Math.round(recoveredMs)} ms`,
    );

    // Every stream in flight ended: complete (re-queued and recomputed) or with a
    // retriable error event, and always with [DONE]; none hung.
    for (const outcome of await Promise.all(inFlight)) {
      expect(outcome.status).toBe(200);
      expect(outcome.errorCode).toBeNull();
      expect(outcome.done).toBe(true);
      if (outcome.errorEvent) expect(outcome.errorEvent.code).toBe("backend_unavailable");
      else expect(outcome.usage?.completion_tokens).toBe(200);
    }
    await expectIdle(backend.url, 10_000);
    expect(backend.childPids().some((pid) => !executors.includes(pid))).toBe(true);
  });
});
