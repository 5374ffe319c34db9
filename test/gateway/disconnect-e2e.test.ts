// Clients that go away, over real sockets: the gateway Worker under `wrangler dev` in front
// of the real backend and executor (tiny-llama on CPU). A client that leaves before the
// backend's headers, mid-stream, or while a non-streamed answer is generated has its backend
// call aborted: the backend ends the sequences in its engine and frees their pages, the
// gateway writes one 499 `client_disconnect` row with the tokens relayed, and the tenant's
// stream slot is free for the next stream (issue #20, 2). A client that waits past the hold
// gets its answer, held open with heartbeats, as the official openai client reads it.
import { randomBytes } from "node:crypto";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { heartbeatMs, holdAfterMs } from "../../gateway/src/proxy/held-answer.ts";
import { type Backend, haveFixtures } from "../backend/backend-process.ts";
import { expectIdle, readMetrics } from "../reliability/backend-probe.ts";
import type { Tenant } from "./gateway-admin.ts";
import type { Gateway } from "./gateway-process.ts";
import { type Stack, startStack } from "./gateway-stack.ts";

/** A client leaves this long after sending: past the hold and two heartbeats, mid-generation. */
const LEAVE_AFTER_MS = holdAfterMs + 2 * heartbeatMs + 500;

/** Many tokens for the tiny model on CPU: seconds of work, cut off long before the end. */
const longChat = (extra: object = {}) => ({
  model: "tiny-llama",
  messages: [{ role: "user", content: "Tell me everything" }],
  max_tokens: 1000,
  temperature: 0,
  ignore_eos: true,
  ...extra,
});

type UsageRow = {
  status: number;
  outcome: string;
  prompt_tokens: number;
  completion_tokens: number;
};

describe.skipIf(!haveFixtures)("clients that go away, through wrangler dev", () => {
  let stack: Stack;
  let gateway: Gateway;
  let backend: Backend;
  let backendSecret: string;
  let tenant: Tenant;

  beforeAll(async () => {
    // 16 seats: one request of 16 choices fills the engine
    stack = await startStack(randomBytes(16).toString("hex"), ["--max-num-seqs", "16"]);
    ({ gateway, backend, backendSecret } = stack);
    tenant = await stack.admin.createTenant("leaver", { concurrent_streams: 1 });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const aborted = async () =>
    (await readMetrics(backend.url, backendSecret)).get(
      'lorafleet_requests_total{finish_reason="abort"}',
    ) ?? 0;

  /** Sends a chat through the gateway as the tenant; `leave` aborts the client's connection. */
  const send = (body: object, requestId: string, leave: AbortSignal) =>
    fetch(`${gateway.url}/v1/chat/completions`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${tenant.key}`,
        "content-type": "application/json",
        "x-request-id": requestId,
      },
      body: JSON.stringify(body),
      signal: leave,
    });

  /** The one usage row of `requestId`, once the gateway wrote it. */
  const rowOf = async (requestId: string): Promise<UsageRow> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const response = await fetch(`${gateway.url}/v1/usage/requests/${requestId}`, {
        headers: { authorization: `Bearer ${tenant.key}` },
      });
      const rows = ((await response.json()) as { data: UsageRow[] }).data;
      if (rows.length > 0 || Date.now() > deadline) {
        expect(rows).toHaveLength(1);
        return rows[0] as UsageRow;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };

  /** The backend ends `count` more sequences as aborted and is idle again (no running request, no KV page). */
  const expectAbortedAndIdle = async (before: number, count: number) => {
    const deadline = Date.now() + 20_000;
    while ((await aborted()) < before + count && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await aborted()).toBe(before + count);
    await expectIdle(backend.url, 20_000, backendSecret);
  };

  /** A stream admitted at concurrent_streams: 1 and read to its end: the slot was released. */
  const expectStreamSlotFree = async () => {
    const response = await send(
      { ...longChat(), max_tokens: 3, stream: true },
      `after-${randomBytes(4).toString("hex")}`,
      new AbortController().signal,
    );
    expect(response.status).toBe(200);
    expect(await response.text()).toContain("data: [DONE]");
  };

  /**
   * Takes every seat of the engine (16 choices of 1000 tokens, --max-num-seqs 16), asked of
   * the backend directly, so what the gateway sends next waits in the queue; returns a
   * function that frees them.
   */
  const fillEngine = async () => {
    const blocker = new AbortController();
    const blocking = fetch(`${backend.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${backendSecret}`, "content-type": "application/json" },
      body: JSON.stringify(longChat({ n: 16 })),
      signal: blocker.signal,
    }).catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, 500));
    return async () => {
      blocker.abort();
      await blocking;
    };
  };

  it("holds the answers of clients that wait past the hold, as the official client reads them", async () => {
    const free = await fillEngine();
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: tenant.key, maxRetries: 0 });
    const asked = { ...longChat(), max_tokens: 4 } as OpenAI.ChatCompletionCreateParamsNonStreaming;
    const whole = client.chat.completions
      .create(asked, { headers: { "x-request-id": "held-whole" } })
      .withResponse();
    const streamed = client.chat.completions.create(
      { ...asked, stream: true, stream_options: { include_usage: true } },
      { headers: { "x-request-id": "held-stream" } },
    );
    // queued for seconds: both are answered 200 at once and held open with heartbeats
    await new Promise((resolve) => setTimeout(resolve, holdAfterMs + 2 * heartbeatMs));
    await free();
    const { data: answer, response } = await whole;
    expect(response.headers.get("content-encoding")).toBe("identity");
    expect(answer.usage?.completion_tokens).toBe(4);
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of await streamed) usage = chunk.usage ?? usage;
    expect(usage?.completion_tokens).toBe(4);
    for (const [id, used] of [
      ["held-whole", answer.usage],
      ["held-stream", usage],
    ] as const) {
      expect(await rowOf(id)).toMatchObject({
        status: 200,
        outcome: "ok",
        prompt_tokens: used?.prompt_tokens,
        completion_tokens: 4,
      });
    }
    await expectIdle(backend.url, 60_000, backendSecret);
  });

  it("aborts a stream whose client left before the backend's headers (queued behind a full engine)", async () => {
    const free = await fillEngine();
    const before = await aborted();
    const leave = new AbortController();
    const response = await send({ ...longChat(), stream: true }, "left-queued", leave.signal);
    // the gateway answered and holds the stream open: only heartbeats, no event yet
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe(": keep-alive\n\n");
    await new Promise((resolve) => setTimeout(resolve, LEAVE_AFTER_MS - holdAfterMs));
    leave.abort();
    expect(await rowOf("left-queued")).toMatchObject({
      status: 499,
      outcome: "client_disconnect",
      prompt_tokens: 0,
      completion_tokens: 0,
    });
    // the queued request was ended in the engine; then the blocker's 16 go too
    const deadline = Date.now() + 20_000;
    while ((await aborted()) < before + 1 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await aborted()).toBe(before + 1);
    await free();
    await expectIdle(backend.url, 60_000, backendSecret);
    await expectStreamSlotFree();
  });

  it("aborts a stream whose client left mid-stream and bills the tokens relayed", async () => {
    const before = await aborted();
    const leave = new AbortController();
    const response = await send(
      {
        ...longChat(),
        stream: true,
        stream_options: { include_usage: true, continuous_usage_stats: true },
      },
      "left-mid-stream",
      leave.signal,
    );
    expect(response.status).toBe(200);
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    let seen = { prompt_tokens: 0, completion_tokens: 0 };
    let buffered = "";
    while (seen.completion_tokens < 5) {
      buffered += new TextDecoder().decode((await reader.read()).value);
      const events = buffered.split("\n\n");
      buffered = events.pop() ?? "";
      for (const event of events) {
        const data = event.match(/^data: (\{.*\})$/m)?.[1];
        if (data !== undefined) seen = JSON.parse(data).usage ?? seen;
      }
    }
    leave.abort();
    const row = await rowOf("left-mid-stream");
    expect(row).toMatchObject({
      status: 499,
      outcome: "client_disconnect",
      prompt_tokens: seen.prompt_tokens,
    });
    // what the gateway relayed: at least what the client read, never the whole answer
    expect(row.completion_tokens).toBeGreaterThanOrEqual(seen.completion_tokens);
    expect(row.completion_tokens).toBeLessThan(1000);
    await expectAbortedAndIdle(before, 1);
    await expectStreamSlotFree();
  });

  it("aborts a non-streamed request whose client left while it was generated", async () => {
    const before = await aborted();
    const leave = new AbortController();
    const sent = send(longChat({ n: 16 }), "left-waiting", leave.signal);
    void sent.catch(() => null);
    await new Promise((resolve) => setTimeout(resolve, LEAVE_AFTER_MS));
    leave.abort();
    // the backend never answered: no tokens billed
    expect(await rowOf("left-waiting")).toMatchObject({
      status: 499,
      outcome: "client_disconnect",
      prompt_tokens: 0,
      completion_tokens: 0,
    });
    // its 16 choices are ended in the engine, long before their 1000 tokens
    await expectAbortedAndIdle(before, 16);
    await expectStreamSlotFree();
  });
});
