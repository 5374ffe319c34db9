import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { concurrencyLimit, runOpenLoop } from "./client.ts";
import { summarize } from "./metrics.ts";
import type { TraceRequest } from "./workload.ts";

/**
 * Test peer: a real HTTP server speaking the OpenAI streaming completions format,
 * whose behaviour the `model` field picks: "fast" streams max_tokens tokens 10 ms
 * apart after 20 ms; "slow" waits 400 ms before its first token; "refuse" answers
 * 429; "broken" cuts the stream before [DONE]; "hang" never answers; "abort" ends
 * with finish_reason "abort"; "nousage" streams without a usage chunk.
 */
interface PeerLog {
  arrivals: { model: string; at: number; body: Record<string, unknown> }[];
  maxConcurrent: number;
}

function startTestPeer(): Promise<{ server: Server; url: string; log: PeerLog }> {
  const log: PeerLog = { arrivals: [], maxConcurrent: 0 };
  let concurrent = 0;
  const started = performance.now();
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw) as { model: string; max_tokens: number; prompt: number[] };
    log.arrivals.push({ model: body.model, at: (performance.now() - started) / 1000, body });
    if (body.model === "refuse") {
      res.writeHead(429, { "content-type": "application/json" }).end('{"error":"queue full"}');
      return;
    }
    if (body.model === "hang") return; // the client's timeout ends it
    concurrent += 1;
    log.maxConcurrent = Math.max(log.maxConcurrent, concurrent);
    res.writeHead(200, { "content-type": "text/event-stream" });
    const send = (data: unknown) => res.write(`data: ${JSON.stringify(data)}\r\n\r\n`);
    await sleep(body.model === "slow" ? 400 : 20);
    for (let i = 0; i < body.max_tokens; i++) {
      if (body.model === "broken" && i === 2) {
        res.destroy();
        concurrent -= 1;
        return;
      }
      const last = i === body.max_tokens - 1;
      const reason = last ? (body.model === "abort" ? "abort" : "length") : null;
      send({ choices: [{ index: 0, text: `t${i}`, finish_reason: reason }] });
      await sleep(10);
    }
    if (body.model !== "nousage")
      send({
        choices: [],
        usage: { completion_tokens: body.max_tokens, prompt_tokens_details: { cached_tokens: 2 } },
      });
    res.end("data: [DONE]\n\n");
    concurrent -= 1;
  };
  const server = createServer((req, res) => void handle(req, res));
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve({ server, url: `http://127.0.0.1:${port}`, log });
    }),
  );
}

function request(
  id: number,
  arrivalS: number,
  adapter: string | null,
  outputLen = 5,
): TraceRequest {
  return { id, arrivalS, adapter, inputLen: 3, outputLen, prompt: [5, 6, 7] };
}

describe("runOpenLoop against the test peer", () => {
  let peer: Awaited<ReturnType<typeof startTestPeer>>;
  beforeAll(async () => {
    peer = await startTestPeer();
  });
  afterAll(() => {
    peer.server.closeAllConnections();
    peer.server.close();
  });
  const run = (requests: TraceRequest[], timeoutS = 5, maxConcurrency?: number) =>
    runOpenLoop(requests, {
      baseUrl: peer.url,
      modelFor: (r) => r.adapter ?? "fast",
      requestTimeoutS: timeoutS,
      maxConcurrency,
    });

  it("sends at trace times regardless of completions (open loop)", async () => {
    peer.log.arrivals.length = 0;
    peer.log.maxConcurrent = 0;
    // Each reply takes ~20 + 10 × 60 = 620 ms; requests arrive every 30 ms.
    const requests = Array.from({ length: 8 }, (_, i) => request(i, 0.03 * i, null, 60));
    const records = await run(requests);
    expect(peer.log.maxConcurrent).toBeGreaterThanOrEqual(5);
    // Lateness stays well below a reply's 620 ms: no send waited for a completion (the
    // margin is for a loaded 2-core CI machine, where timers fire late).
    for (const r of records) {
      expect(r.sentS - r.scheduledS).toBeLessThan(0.3);
      expect(r.sentS).toBeGreaterThanOrEqual(r.scheduledS - 0.002);
    }
    const arrivals = peer.log.arrivals.map((a) => a.at);
    expect((arrivals.at(-1) as number) - (arrivals[0] as number)).toBeLessThan(0.21 + 0.3);
  });

  it("holds arrivals beyond maxConcurrency until a request ends, and counts the wait", async () => {
    peer.log.arrivals.length = 0;
    peer.log.maxConcurrent = 0;
    // All arrive at once; each reply takes ~20 + 10 × 10 = 120 ms.
    const requests = Array.from({ length: 9 }, (_, i) => request(i, 0, null, 10));
    const records = await run(requests, 5, 3);
    expect(peer.log.maxConcurrent).toBe(3);
    expect(records.every((r) => r.status === "ok")).toBe(true);
    // Three waves: the last three were sent once the first six had ended.
    const sent = records.map((r) => r.sentS).sort((a, b) => a - b);
    expect((sent[8] as number) - (sent[0] as number)).toBeGreaterThan(0.2);
    expect(summarize(records, 10).maxSendLagS).toBeGreaterThan(0.2);
  });

  it("sends the prompt as token ids with max_tokens and streaming options", async () => {
    peer.log.arrivals.length = 0;
    await run([request(0, 0, "fast", 3)]);
    expect(peer.log.arrivals[0]?.body).toMatchObject({
      model: "fast",
      prompt: [5, 6, 7],
      max_tokens: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
  });

  it("records latencies and token counts of a completed stream", async () => {
    const [r] = await run([request(0, 0, "fast", 6)]);
    expect(r?.status).toBe("ok");
    expect(r?.finishReason).toBe("length");
    expect(r?.tokenCount).toBe("usage");
    expect(r?.outputTokens).toBe(6);
    expect(r?.cachedTokens).toBe(2);
    const first = (r?.firstTokenS as number) - (r?.scheduledS as number);
    expect(first).toBeGreaterThanOrEqual(0.015);
    expect(first).toBeLessThan(0.2);
    expect((r?.endS as number) - (r?.firstTokenS as number)).toBeGreaterThanOrEqual(0.045);
  });

  it("counts chunks when the server sends no usage", async () => {
    const [r] = await run([request(0, 0, "nousage", 4)]);
    expect(r).toMatchObject({
      status: "ok",
      tokenCount: "chunks",
      outputTokens: 4,
      cachedTokens: null,
    });
  });

  it("classifies refused, cut, hung and server-aborted requests", async () => {
    const records = await run(
      [
        request(0, 0, "refuse"),
        request(1, 0, "broken"),
        request(2, 0, "hang"),
        request(3, 0, "abort"),
      ],
      0.5,
    );
    const byId = (id: number) => records.find((r) => r.id === id);
    expect(byId(0)).toMatchObject({ status: "aborted", firstTokenS: null });
    expect(byId(0)?.error).toMatch(/HTTP 429/);
    expect(byId(1)?.status).toBe("failed");
    expect(byId(2)).toMatchObject({ status: "aborted", firstTokenS: null });
    expect(byId(2)?.error).toMatch(/within 0.5 s/);
    expect(byId(3)).toMatchObject({ status: "aborted", finishReason: "abort" });
  });

  it("summarizes throughput, percentiles and SLO attainment", async () => {
    const requests = [
      request(0, 0, "fast", 10),
      request(1, 0.01, "fast", 10),
      request(2, 0.02, "slow", 10),
      request(3, 0.03, "refuse", 10),
    ];
    const m = summarize(await run(requests), 0.2);
    expect(m).toMatchObject({ requests: 4, ok: 3, aborted: 1, failed: 0, shortOutputs: 0 });
    expect(m.sloAttainment).toBe(0.5);
    expect(m.requestsPerS).toBeCloseTo(3 / m.durationS, 6);
    expect(m.outputTokensPerS).toBeCloseTo(30 / m.durationS, 6);
    expect(m.firstTokenS.max as number).toBeGreaterThan(0.38);
    expect(m.firstTokenS.p50 as number).toBeLessThan(0.2);
    expect(m.perTokenS.p50 as number).toBeGreaterThan(0.009);
    expect(m.perTokenS.p50 as number).toBeLessThan(0.05);
    expect(m.endToEndS.p99 as number).toBeGreaterThanOrEqual(m.endToEndS.p50 as number);
    expect(m.failures).toEqual([expect.stringMatching(/^request 3 aborted: HTTP 429/)]);
  });
});

describe("concurrencyLimit", () => {
  it("runs at most `limit` at once, the rest in call order, and frees a slot on failure", async () => {
    const slot = concurrencyLimit(2);
    let active = 0;
    let peak = 0;
    const started: number[] = [];
    const task = (i: number) =>
      slot(async () => {
        started.push(i);
        active += 1;
        peak = Math.max(peak, active);
        await sleep(5);
        active -= 1;
        if (i === 1) throw new Error("boom");
        return i;
      });
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map(task));
    expect(peak).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => r.status)).toEqual([
      "fulfilled",
      "rejected",
      "fulfilled",
      "fulfilled",
      "fulfilled",
    ]);
  });
});
