// Prefix caching at the gateway (#23): the cache salt it sets per key (or per tenant, opted
// in), `cached_tokens` carried into answers, streams and usage, and prefix-affinity routing
// over 3 backends. The test peer keeps a prefix cache per virtual backend keyed by the salt
// and model, as gpu-backend does (test/peer/test-peer.ts); the real backend's isolation is
// tested end to end in test/gateway/prefix-cache-e2e.test.ts.
import {
  createExecutionContext,
  createScheduledController,
  env,
  waitOnExecutionContext,
} from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index.ts";
import {
  adapterFiles,
  admin,
  adminCall,
  call,
  chat,
  chatOrder,
  createTenant,
  defined,
  issueKey,
  peerRequests,
  peerServedModel,
  registerBaseModel,
  registerPeerBackend,
  saltOf,
  setPeerMode,
  type Tenant,
  tinyModel,
  upload,
  uploadForm,
  waitForUsageRows,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

type Usage = {
  prompt_tokens: number;
  completion_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
};
type Answer = { backend: string; usage: Usage; choices: { message: { content: string } }[] };

const prompt = "Tell me a story about a lighthouse keeper and her cat";

/** The cached tokens the backend reported for a chat of `content` sent with `key`. */
async function cachedFor(key: string, model: string, extra: Record<string, unknown> = {}) {
  const res = await chat(key, model, { messages: [{ role: "user", content: prompt }], ...extra });
  expect(res.status).toBe(200);
  return ((await res.json()) as Answer).usage.prompt_tokens_details.cached_tokens;
}

describe("the prefix cache's salt", () => {
  it("is one per key, so neither another tenant nor another key of the tenant hits a prompt's cache; a tenant opted in shares one across its keys", async () => {
    const { model, backend } = await peerServedModel({ mode: "ok" });
    const a = await createTenant();
    const otherKeyOfA = await issueKey(a.id, ["inference"]);
    const b = await createTenant();
    expect(await cachedFor(a.key, model.name)).toBe(0);
    expect(await cachedFor(a.key, model.name)).toBe(prompt.split(" ").length - 1);
    expect(await cachedFor(b.key, model.name)).toBe(0);
    expect(await cachedFor(otherKeyOfA, model.name)).toBe(0);

    const sent = (await peerRequests(backend)).map((r) => r.body.lorafleet);
    expect(sent.map((l) => l.cache_salt)).toEqual([
      await saltOf(a, a.key, false),
      await saltOf(a, a.key, false),
      await saltOf(b, b.key, false),
      await saltOf(a, otherKeyOfA, false),
    ]);
    expect(new Set(sent.map((l) => l.cache_salt)).size).toBe(3);
    expect(sent[0]?.cache_salt).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // A client's own `lorafleet` is replaced whole: B naming A's salt still gets B's own.
    const aSalt = await saltOf(a, a.key, false);
    const lorafleet = { tenant: a.id, cache_salt: aSalt };
    expect(await cachedFor(b.key, model.name, { lorafleet })).toBe(prompt.split(" ").length - 1);
    const forged = defined((await peerRequests(backend)).at(-1)).body.lorafleet;
    expect(forged).toMatchObject({ tenant: b.id, cache_salt: await saltOf(b, b.key, false) });

    // Opted in: one salt for all of A's keys (a new one: nothing cached under it yet).
    const patched = await admin<{ share_prefix_cache: boolean }>("PATCH", `/tenants/${a.id}`, {
      share_prefix_cache: true,
    });
    expect(patched.share_prefix_cache).toBe(true);
    expect(await cachedFor(a.key, model.name)).toBe(0);
    expect(await cachedFor(otherKeyOfA, model.name)).toBe(prompt.split(" ").length - 1);
    expect(await cachedFor(b.key, model.name)).toBe(prompt.split(" ").length - 1); // B's own
    const shared = (await peerRequests(backend)).slice(-3).map((r) => r.body.lorafleet.cache_salt);
    expect(shared.slice(0, 2)).toEqual([
      await saltOf(a, a.key, true),
      await saltOf(a, otherKeyOfA, true),
    ]);
    expect(await saltOf(a, a.key, true)).toBe(await saltOf(a, otherKeyOfA, true));
    expect(
      (await admin<{ share_prefix_cache: boolean }>("GET", `/tenants/${a.id}`)).share_prefix_cache,
    ).toBe(true);
  });

  it("refuses a share_prefix_cache that is not a boolean", async () => {
    const tenant = await createTenant();
    const res = await adminCall("PATCH", `/tenants/${tenant.id}`, { share_prefix_cache: "yes" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { param: string } }).error.param).toBe(
      "share_prefix_cache",
    );
  });
});

describe("cached_tokens", () => {
  it("reaches the client and the usage rows, streamed or not, and sums in the usage API", async () => {
    const { model } = await peerServedModel({ mode: "ok" });
    const tenant = await createTenant();
    const messages = [
      { role: "system", content: "You are a terse assistant" },
      { role: "user", content: "name three rivers" },
    ];
    const first = (await (await chat(tenant.key, model.name, { messages })).json()) as Answer;
    expect(first.usage.prompt_tokens_details.cached_tokens).toBe(0);
    // turn 2, streamed, the client asking for the usage: the final chunk carries the details
    messages.push(
      { role: "assistant", content: defined(first.choices[0]).message.content },
      { role: "user", content: "and three lakes" },
    );
    const streamed = await chat(
      tenant.key,
      model.name,
      { messages, stream: true, stream_options: { include_usage: true } },
      { "x-request-id": "turn-2" },
    );
    const events = (await streamed.text()).split("\n\n").filter((e) => e.startsWith("data: {"));
    const final = JSON.parse(defined(events.at(-1)).slice(6)) as { usage: Usage };
    expect(final.usage.prompt_tokens_details.cached_tokens).toBe(first.usage.prompt_tokens);
    // turn 3, streamed, no usage asked for: the client sees none, the row still counts it
    messages.push(
      { role: "assistant", content: "tok tok tok tok" },
      { role: "user", content: "and one sea" },
    );
    const quiet = await chat(tenant.key, model.name, { messages, stream: true });
    expect(await quiet.text()).not.toContain("cached_tokens");

    const rows = await waitForUsageRows(tenant.id, 3);
    const turn2 = final.usage.prompt_tokens;
    expect(rows.map((r) => [r.prompt_tokens, r.cached_tokens])).toEqual([
      [first.usage.prompt_tokens, 0],
      [turn2, first.usage.prompt_tokens],
      [turn2 + 4 + 3, turn2],
    ]);
    const summary = (await (await call(tenant.key, "GET", "/v1/usage")).json()) as Usage;
    expect(summary.prompt_tokens_details).toEqual({
      cached_tokens: first.usage.prompt_tokens + turn2,
    });
    const byLabel = (await (await call(tenant.key, "GET", "/v1/usage/requests/turn-2")).json()) as {
      data: Usage[];
    };
    expect(byLabel.data.map((r) => r.prompt_tokens_details)).toEqual([
      { cached_tokens: first.usage.prompt_tokens },
    ]);
  });
});

describe("prefix-affinity routing over 3 backends", () => {
  /** 3 backends of capacity 32 reporting loads within the bound, and a tenant's adapter on them. */
  async function threeBackends() {
    const model = await registerBaseModel(tinyModel());
    const backends: string[] = [];
    for (const load of [20, 25, 30]) {
      const id = await registerPeerBackend(model.name);
      await setPeerMode(id, { mode: "ok", load });
      backends.push(id);
    }
    // the cron health check records the loads they report: 30 < ceil(1.25 * 76 / 3) = 32
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    const listed = await admin<{ data: { id: string; load: number }[] }>("GET", "/backends");
    expect(backends.map((id) => listed.data.find((b) => b.id === id)?.load)).toEqual([20, 25, 30]);
    const tenant = await createTenant();
    const res = await upload(tenant.key, uploadForm("helper", adapterFiles(buildAdapter(model))));
    const adapterId = ((await res.json()) as { id: string }).id;
    return { model, backends, tenant, target: { adapterId, baseModel: model.name } };
  }

  const opening = (n: number) => [
    { role: "system", content: "You are the helpdesk of a lighthouse company" },
    { role: "user", content: `Ticket ${n}: the lamp of lighthouse ${n} flickers` },
  ];

  /** Sends `turns` turns of one conversation; the backend and cached tokens of each. */
  async function converse(
    tenant: Tenant,
    messages: { role: string; content: string }[],
    turns: number,
  ) {
    const seen: { backend: string; cached: number; prompt: number }[] = [];
    for (let turn = 0; turn < turns; turn += 1) {
      const res = await chat(tenant.key, "helper", { messages });
      expect(res.status).toBe(200);
      const answer = (await res.json()) as Answer;
      seen.push({
        backend: answer.backend,
        cached: answer.usage.prompt_tokens_details.cached_tokens,
        prompt: answer.usage.prompt_tokens,
      });
      messages.push(
        { role: "assistant", content: defined(answer.choices[0]).message.content },
        { role: "user", content: `follow-up ${turn} with more detail` },
      );
    }
    return seen;
  }

  it("sends every turn of a 10-turn conversation to one backend, where its prefix is cached", async () => {
    const { backends, tenant, target } = await threeBackends();
    const messages = opening(0);
    const expected = await chatOrder(tenant, target, { model: "helper", messages }, backends);
    const turns = await converse(tenant, messages, 10);
    expect(turns.map((t) => t.backend)).toEqual(Array(10).fill(expected[0]));
    // each turn finds the whole prompt of the turn before in that backend's cache
    expect(turns.map((t) => t.cached)).toEqual([0, ...turns.slice(0, -1).map((t) => t.prompt)]);
  });

  it("spreads different conversations of one adapter over its two home backends", async () => {
    const { backends, tenant, target } = await threeBackends();
    const landed: string[] = [];
    for (let n = 0; n < 16; n += 1) {
      const body = { model: "helper", messages: opening(n) };
      const [turn] = await converse(tenant, opening(n), 1);
      expect(turn?.backend).toBe((await chatOrder(tenant, target, body, backends))[0]);
      landed.push(defined(turn).backend);
    }
    // two backends, both used (all 16 on one of two has probability 2^-15)
    expect(new Set(landed).size).toBe(2);
  });

  it("moves a conversation whose backend fails to one other backend, turn after turn", async () => {
    const { tenant } = await threeBackends();
    const messages = opening(99);
    const [before] = await converse(tenant, messages, 1);
    await setPeerMode(defined(before).backend, { mode: "error" });
    const after = await converse(tenant, messages, 3);
    const moved = defined(after[0]).backend;
    expect(moved).not.toBe(before?.backend);
    expect(after.map((t) => t.backend)).toEqual([moved, moved, moved]);
    // its prefix is computed again there once, then cached
    expect(after.map((t) => t.cached > 0)).toEqual([false, true, true]);
  });
});
