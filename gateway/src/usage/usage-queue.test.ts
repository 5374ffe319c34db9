// The usage Queue's consumer against the real local D1: rows written in chunks, one D1 statement each,
// exactly once by the gateway's request key when D1 fails mid-batch, when the consumer dies
// after a commit but before its acks (the whole batch comes again) and when a message is
// delivered twice; and the real Queue end to end (producer -> Miniflare's queue -> consumer).
import { createExecutionContext, createMessageBatch, env, getQueueResult } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  defined,
  unique,
  usageRows as usageRowsNow,
  waitForUsageRows,
} from "../../test/helpers/gateway-client.ts";
import type { UsageRecord } from "./record.ts";
import { type UsageMessage, UsageSender, writeUsageBatch } from "./usage-queue.ts";

function record(tenantId: string, i: number): UsageRecord {
  return {
    requestKey: `${tenantId}-req-${i}`,
    requestId: `label-${i}`,
    tenantId,
    keyId: "key_q",
    endpoint: "/v1/chat/completions",
    model: "m",
    adapterId: null,
    backendId: "b",
    promptTokens: i,
    completionTokens: 1,
    cachedTokens: 0,
    status: 200,
    outcome: "ok",
    latencyMs: 3,
  };
}

/** One message per index holding that row, or `perMessage` rows each (message i: rows i*perMessage...). */
function messages(tenantId: string, indexes: number[], perMessage = 1) {
  return indexes.map((i) => ({
    id: `msg-${i}`,
    timestamp: new Date(),
    attempts: 1,
    body: {
      rows: Array.from({ length: perMessage }, (_, k) => {
        const n = i * perMessage + k;
        return { record: record(tenantId, n), createdAt: 1_000 + n };
      }),
    } satisfies UsageMessage,
  }));
}

/** Runs the consumer on one delivered batch; answers which messages it acked and which it retried. */
async function consume(db: D1Database, delivered: ReturnType<typeof messages>, chunk = 50) {
  const batch = createMessageBatch<UsageMessage>("lorafleet-usage", delivered);
  const ctx = createExecutionContext();
  await writeUsageBatch(db, batch, chunk);
  const result = await getQueueResult(batch, ctx);
  return {
    acked: [...result.explicitAcks].sort(),
    retried: result.retryMessages.map((m: { msgId: string }) => m.msgId).sort(),
  };
}

/** The real D1 whose `failOn`-th write (a statement's `run`) fails: before running it, or after it committed. */
function failingWriteD1(failOn: number, when: "before" | "after") {
  let calls = 0;
  const run = async (statement: D1PreparedStatement) => {
    calls += 1;
    if (calls === failOn && when === "before")
      throw new Error("D1_ERROR: Network connection lost.");
    const result = await statement.run();
    if (calls === failOn) throw new Error("consumer killed after the commit, before its acks");
    return result;
  };
  const failing = (statement: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(statement, {
      get(target, prop) {
        if (prop === "run") return () => run(target);
        if (prop === "bind") return (...values: unknown[]) => failing(target.bind(...values));
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  return new Proxy(env.DB, {
    get(target, prop) {
      if (prop === "prepare") return (query: string) => failing(target.prepare(query));
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const ids = (indexes: number[]) => indexes.map((i) => `msg-${i}`).sort();
const tokensOf = (rows: { prompt_tokens: number }[]) =>
  rows.map((r) => r.prompt_tokens).sort((a, b) => a - b);

describe("writeUsageBatch", () => {
  it("acks the chunks that committed and retries the rest when D1 fails mid-batch; the retry completes it once", async () => {
    const tenantId = unique("tn_q");
    const all = messages(tenantId, range(120));
    // chunks of 50: the second fails before it commits
    const first = await consume(failingWriteD1(2, "before"), all);
    expect(first.acked).toEqual(ids(range(50)));
    expect(first.retried).toEqual(ids(range(120).slice(50)));
    const redelivered = all.filter((m) => first.retried.includes(m.id));
    expect(await consume(env.DB, redelivered)).toEqual({
      acked: ids(range(120).slice(50)),
      retried: [],
    });
    expect(tokensOf(await waitForUsageRows(tenantId, 120))).toEqual(range(120));
  });

  it("writes nothing twice when the consumer dies after a commit and the whole batch comes again", async () => {
    const tenantId = unique("tn_q");
    const all = messages(tenantId, range(80));
    // the second chunk commits, then the consumer dies: none of its messages is acked
    const killed = await consume(failingWriteD1(2, "after"), all);
    expect(killed.retried).toEqual(ids(range(80).slice(50)));
    // a dead consumer's explicit acks may be lost too: the Queue delivers the batch whole
    expect((await consume(env.DB, all)).acked).toEqual(ids(range(80)));
    const rows = await waitForUsageRows(tenantId, 80);
    expect(tokensOf(rows)).toEqual(range(80));
    expect(rows.map((r) => r.created_at).sort((a, b) => a - b)).toEqual(
      range(80).map((i) => 1_000 + i),
    );
  });

  it("writes messages of many rows whole, a chunk of whole messages per transaction", async () => {
    const tenantId = unique("tn_q");
    // 7 messages of 20 rows: chunks of <= 50 rows are 2 messages each; the 3rd chunk fails
    const all = messages(tenantId, range(7), 20);
    const first = await consume(failingWriteD1(3, "before"), all);
    expect(first).toEqual({ acked: ids(range(4)), retried: ids([4, 5, 6]) });
    await consume(env.DB, all.slice(4));
    expect(tokensOf(await waitForUsageRows(tenantId, 140))).toEqual(range(140));
  });

  it("writes a chunk as one statement, every column as the record has it", async () => {
    const tenantId = unique("tn_q");
    const all = messages(tenantId, range(3), 2);
    const first = defined(all[0]?.body.rows[0]);
    first.record = { ...first.record, adapterId: "ad_1", backendId: null, outcome: "invalid" };
    let statements = 0;
    const counting = new Proxy(env.DB, {
      get(target, prop) {
        if (prop === "prepare") statements += 1;
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    expect((await consume(counting, all)).acked).toEqual(ids(range(3)));
    expect(statements).toBe(1);
    const rows = await waitForUsageRows(tenantId, 6);
    expect(rows[0]).toEqual({
      id: `${tenantId}-req-0`,
      request_id: "label-0",
      tenant_id: tenantId,
      key_id: "key_q",
      endpoint: "/v1/chat/completions",
      model: "m",
      adapter_id: "ad_1",
      backend_id: null,
      prompt_tokens: 0,
      completion_tokens: 1,
      cached_tokens: 0,
      status: 200,
      outcome: "invalid",
      latency_ms: 3,
      created_at: 1_000,
    });
    expect(rows.map((r) => r.adapter_id)).toEqual(["ad_1", null, null, null, null, null]);
  });

  it("counts a message delivered twice, in one batch or in two, once", async () => {
    const tenantId = unique("tn_q");
    const twice = messages(tenantId, [0, 1, 2, 1, 2, 2]).map((m, n) => ({ ...m, id: `dup-${n}` }));
    expect((await consume(env.DB, twice, 2)).retried).toEqual([]);
    await consume(env.DB, messages(tenantId, [2, 3]));
    expect(tokensOf(await waitForUsageRows(tenantId, 4))).toEqual([0, 1, 2, 3]);
  });
});

/** The real USAGE Queue, counting the messages sent to it and their rows. */
function countingQueue() {
  const sent: number[] = [];
  const USAGE = {
    send: (message: UsageMessage, options?: QueueSendOptions) => {
      sent.push(message.rows.length);
      return env.USAGE.send(message, options);
    },
  } as Queue<UsageMessage>;
  return { bindings: { ...env, USAGE }, sent };
}

describe("UsageSender and the usage Queue end to end", () => {
  it("gathers the rows of requests ending together into one message, and a full one closes", async () => {
    const tenantId = unique("tn_q");
    const queue = countingQueue();
    const sender = new UsageSender(50);
    // 130 rows at once: one full message of 100, one of 30
    await Promise.all(
      range(130).map((i) =>
        sender.add(queue.bindings, { record: record(tenantId, i), createdAt: 1 }),
      ),
    );
    expect(queue.sent).toEqual([100, 30]);
    // a row later goes in a message of its own
    await sender.add(queue.bindings, { record: record(tenantId, 130), createdAt: 1 });
    expect(queue.sent).toEqual([100, 30, 1]);
    expect(tokensOf(await waitForUsageRows(tenantId, 131))).toEqual(range(131));
  });

  it("carries rows to D1 through the real local Queue, each once however often sent", async () => {
    const tenantId = unique("tn_q");
    const sender = new UsageSender(5);
    const sent = [...range(30), 5, 6, 7];
    await Promise.all(
      sent.map((i) => sender.add(env, { record: record(tenantId, i), createdAt: 1 })),
    );
    expect(tokensOf(await waitForUsageRows(tenantId, 30))).toEqual(range(30));
  });

  it("writes the rows to D1 directly when the Queue refuses the message", async () => {
    const tenantId = unique("tn_q");
    const refusing = {
      ...env,
      USAGE: {
        send: () => Promise.reject(new Error("Queue send failed: Too Many Requests")),
      } as unknown as Queue<UsageMessage>,
    };
    const sender = new UsageSender(5);
    await Promise.all(
      range(3).map((i) => sender.add(refusing, { record: record(tenantId, i), createdAt: 1 })),
    );
    expect(tokensOf(await usageRowsNow(tenantId))).toEqual(range(3));
  });
});
