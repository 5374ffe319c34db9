import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { backendCredential } from "../src/auth/backend-credential.ts";
import { heartbeatMs, holdAfterMs } from "../src/proxy/held-answer.ts";
import {
  adapterFiles,
  admin,
  type BaseModelSpec,
  call,
  chat,
  chatOrder,
  createTenant,
  defined,
  eventually,
  peerRequests,
  peerServedModel,
  peerUrl,
  registerBaseModel,
  registerPeerBackend,
  setPeerMode,
  tinyModel,
  unique,
  upload,
  uploadForm,
  usageRows,
  waitForUsageRows,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";
import { testSecrets } from "./peer/constants.ts";

/** A base model with `count` fresh peer backends of its own. */
async function fleet(count: number): Promise<{ model: BaseModelSpec; backends: string[] }> {
  const model = await registerBaseModel(tinyModel());
  const backends: string[] = [];
  for (let i = 0; i < count; i += 1) backends.push(await registerPeerBackend(model.name));
  return { model, backends };
}

async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((e) => e.startsWith("data: "))
    .map((e) => e.slice(6));
}

describe("chat and completions", () => {
  let model: BaseModelSpec;
  let backend: string;
  beforeAll(async () => {
    ({
      model,
      backends: [backend = ""],
    } = await fleet(1));
  });

  it("forwards to the backend with the contract fields and returns its answer, timing and request id", async () => {
    const tenant = await createTenant();
    const res = await chat(
      tenant.key,
      model.name,
      { max_tokens: 3 },
      { "x-request-id": "req-contract-1" },
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("req-contract-1");
    expect(res.headers.get("x-lorafleet-gateway-ms")).toMatch(/^\d+$/);
    const body = (await res.json()) as {
      choices: { message: { content: string } }[];
      usage: { completion_tokens: number };
    };
    expect(body.choices[0]?.message.content).toBe("tok tok tok");
    const received = (await peerRequests(backend)).find(
      (r) => r.headers["x-request-id"] === "req-contract-1",
    );
    expect(received?.path).toBe("/v1/chat/completions");
    // this backend's own secret, never the master BACKEND_SECRET
    expect(received?.headers.authorization).toBe(
      `Bearer ${await backendCredential(testSecrets.backendSecret, backend, 1)}`,
    );
    expect(received?.body).toMatchObject({
      model: model.name,
      max_tokens: 3,
      lorafleet: {
        tenant: tenant.id,
        request_id: "req-contract-1",
        base_model: model.name,
        adapter: null,
      },
    });
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row).toMatchObject({
      outcome: "ok",
      status: 200,
      prompt_tokens: 2,
      completion_tokens: 3,
      backend_id: backend,
    });
  });

  it("leaves the wait for the backend out of x-lorafleet-gateway-ms", async () => {
    const { model: slowModel, backends } = await fleet(1);
    await setPeerMode(defined(backends[0]), { mode: "slow", delayMs: 400 });
    const tenant = await createTenant();
    const started = Date.now();
    const res = await chat(tenant.key, slowModel.name);
    const elapsedMs = Date.now() - started;
    expect(res.status).toBe(200);
    // the 400 ms the backend took are not the gateway's: both fit in what the client waited
    expect(Number(res.headers.get("x-lorafleet-gateway-ms")) + 400).toBeLessThanOrEqual(elapsedMs);
  });

  it("turns x-lorafleet-timeout-ms into the backend's absolute deadline, and refuses bad ones", async () => {
    const tenant = await createTenant();
    const before = Date.now();
    const res = await chat(
      tenant.key,
      model.name,
      {},
      { "x-request-id": "req-deadline-1", "x-lorafleet-timeout-ms": "5000" },
    );
    expect(res.status).toBe(200);
    const received = (await peerRequests(backend)).find(
      (r) => r.headers["x-request-id"] === "req-deadline-1",
    );
    const deadline = Number(received?.body.lorafleet.deadline_ms);
    expect(deadline).toBeGreaterThanOrEqual(before + 5000);
    expect(deadline).toBeLessThan(Date.now() + 5000 + 1);
    for (const bad of ["0", "-5", "soon", String(2 * 60 * 60_000)]) {
      expect(
        (await chat(tenant.key, model.name, {}, { "x-lorafleet-timeout-ms": bad })).status,
      ).toBe(400);
    }
  });

  it("serves /v1/completions and generates a request id when the client sends none", async () => {
    const tenant = await createTenant();
    const res = await call(tenant.key, "POST", "/v1/completions", {
      model: model.name,
      prompt: "one two three",
      max_tokens: 2,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(((await res.json()) as { choices: { text: string }[] }).choices[0]?.text).toBe(
      "tok tok",
    );
  });

  it("passes multi-prompt completions to the backend as one call", async () => {
    const tenant = await createTenant();
    const prompts = [["one two", "three"], [[1, 2, 3]], [[1, 2], [3]]];
    for (const prompt of prompts) {
      const res = await call(
        tenant.key,
        "POST",
        "/v1/completions",
        { model: model.name, prompt, max_tokens: 1 },
        { "x-request-id": `multi-${JSON.stringify(prompt).length}` },
      );
      expect(res.status).toBe(200);
    }
    const received = (await peerRequests(backend)).filter((r) =>
      String(r.headers["x-request-id"]).startsWith("multi-"),
    );
    expect(received.map((r) => r.body.prompt)).toEqual(prompts);
    // A list mixing texts and token-id lists is none of OpenAI's forms (OpenAI refuses it too).
    const refused: [unknown, string][] = [
      [[], "prompt"],
      [["one", [1, 2]], "prompt"],
      [[[1, 2], "one"], "prompt"],
      [[[]], "prompt[0]"],
    ];
    for (const [bad, param] of refused) {
      const res = await call(tenant.key, "POST", "/v1/completions", {
        model: model.name,
        prompt: bad,
      });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { param: string } }).error.param).toBe(param);
    }
  });

  it("sends an adapter's id, sha256 and signed URLs; the model name stays the client's", async () => {
    const tenant = await createTenant();
    expect(
      (await upload(tenant.key, uploadForm("poet", adapterFiles(buildAdapter(model))))).status,
    ).toBe(201);
    const res = await chat(tenant.key, "poet", {}, { "x-request-id": "req-adapter-1" });
    expect(res.status).toBe(200);
    const received = (await peerRequests(backend)).find(
      (r) => r.headers["x-request-id"] === "req-adapter-1",
    );
    expect(received?.body.model).toBe("poet");
    expect(received?.body.lorafleet.adapter).toMatchObject({ name: "poet", rank: 4 });
    expect(received?.body.lorafleet.adapter?.weights_url).toMatch(
      new RegExp(
        `/internal/adapters/ad_\\w+/adapter_model\\.safetensors\\?backend=${backend}&exp=\\d+&sig=`,
      ),
    );
  });

  it("refuses bad requests in OpenAI's error shape, as the backend words them, without billing them", async () => {
    const tenant = await createTenant();
    const message = [{ role: "user", content: "x" }];
    const cases: [unknown, number, Record<string, unknown>][] = [
      [
        { messages: message },
        400,
        {
          message: "model: Invalid input: expected string, received undefined",
          param: "model",
          code: "invalid_value",
        },
      ],
      [
        { model: model.name, messages: [] },
        400,
        {
          message: "messages: Too small: expected array to have >=1 items",
          param: "messages",
          code: "invalid_value",
        },
      ],
      [
        { model: model.name, messages: message, max_tokens: -1 },
        400,
        { param: "max_tokens", code: "invalid_value" },
      ],
      [
        { model: model.name, messages: message, logit_bias: { "1": 5 } },
        400,
        {
          message: "logit_bias: logit_bias is not supported by this backend",
          param: "logit_bias",
          code: "unsupported_parameter",
        },
      ],
      [
        { model: model.name, messages: message, response_format: { type: "xml" } },
        400,
        { param: "response_format.type", code: "invalid_value" },
      ],
      [
        [1, 2],
        400,
        {
          message: "Invalid input: expected object, received array",
          param: null,
          code: "invalid_value",
        },
      ],
      [{ model: "no-such-model", messages: message }, 404, { code: "model_not_found" }],
    ];
    for (const [body, status, error] of cases) {
      const res = await call(tenant.key, "POST", "/v1/chat/completions", body);
      expect(res.status).toBe(status);
      expect(((await res.json()) as { error: object }).error).toMatchObject(error);
    }
    // null is every OpenAI field's "not set", here too (this gateway used to refuse stream: null)
    const nulls = { stream: null, max_tokens: null, n: null, stop: null, lorafleet: "ignored" };
    expect((await chat(tenant.key, model.name, nulls)).status).toBe(200);
    const notJson = await call(tenant.key, "POST", "/v1/chat/completions", undefined, {
      "content-type": "application/json",
    });
    expect(notJson.status).toBe(400);
    // only the request that was served is billed
    const rows = await waitForUsageRows(tenant.id, 1);
    expect(rows.map((r) => [r.status, r.outcome])).toEqual([[200, "ok"]]);
  });

  it("lists the allowed base models and the tenant's adapters in /v1/models", async () => {
    const tenant = await createTenant();
    expect(
      (await upload(tenant.key, uploadForm("lister", adapterFiles(buildAdapter(model))))).status,
    ).toBe(201);
    const models = (await (await call(tenant.key, "GET", "/v1/models")).json()) as {
      data: { id: string; owned_by: string; root: string }[];
    };
    expect(models.data).toContainEqual(
      expect.objectContaining({ id: model.name, owned_by: "lorafleet" }),
    );
    expect(models.data).toContainEqual(
      expect.objectContaining({ id: "lister", owned_by: tenant.name, root: model.name }),
    );
    const narrow = await createTenant({ allowed_base_models: ["org/other"] });
    const none = (await (await call(narrow.key, "GET", "/v1/models")).json()) as {
      data: unknown[];
    };
    expect(none.data).toEqual([]);
    expect((await chat(narrow.key, model.name)).status).toBe(404);
  });
});

describe("streaming", () => {
  let model: BaseModelSpec;
  beforeAll(async () => {
    ({ model } = await fleet(1));
  });

  it("passes SSE through event by event and meters usage even when the client did not ask for it", async () => {
    const tenant = await createTenant();
    const res = await chat(tenant.key, model.name, { stream: true, max_tokens: 5 });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = await sseEvents(res);
    expect(events.at(-1)).toBe("[DONE]");
    expect(events.slice(0, -1).map((e) => JSON.parse(e).choices[0].delta.content)).toEqual(
      Array(5).fill("tok "),
    );
    // The gateway asked the backend for usage; the client, who did not, sees none of it.
    expect(events.slice(0, -1).filter((e) => "usage" in JSON.parse(e))).toEqual([]);
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row).toMatchObject({ outcome: "ok", completion_tokens: 5, prompt_tokens: 2 });
  });

  it("keeps the usage event when the client asks for include_usage", async () => {
    const tenant = await createTenant();
    const res = await chat(tenant.key, model.name, {
      stream: true,
      max_tokens: 2,
      stream_options: { include_usage: true },
    });
    const events = await sseEvents(res);
    expect(JSON.parse(events[0] ?? "{}").usage).toBeNull();
    expect(JSON.parse(events.at(-2) ?? "{}").usage).toEqual({
      prompt_tokens: 2,
      completion_tokens: 2,
      total_tokens: 4,
      prompt_tokens_details: { cached_tokens: 0 },
    });
  });

  it("delivers the first event before the backend has finished (no buffering)", async () => {
    const tenant = await createTenant();
    const { model: slowModel } = await peerServedModel({
      mode: "slow",
      delayMs: 300,
    });
    const started = Date.now();
    const res = await chat(tenant.key, slowModel.name, { stream: true, max_tokens: 5 });
    const reader = defined(res.body).getReader();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    expect(new TextDecoder().decode(first.value)).toContain("tok ");
    while (!(await reader.read()).done) {}
    const doneAt = Date.now() - started;
    expect(firstAt).toBeLessThan(doneAt - 900); // the other 4 tokens took >= 1.2 s more
  });

  it("records a client disconnect exactly once and stops the backend stream", async () => {
    const tenant = await createTenant();
    const { model: slowModel, backend: slow } = await peerServedModel({
      mode: "slow",
      delayMs: 100,
    });
    const res = await chat(tenant.key, slowModel.name, { stream: true, max_tokens: 50 });
    const reader = defined(res.body).getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row?.outcome).toBe("client_disconnect");
    expect(row?.completion_tokens).toBeGreaterThanOrEqual(2);
    expect(row?.completion_tokens).toBeLessThan(50);
    await eventually(async () => expect((await peerRequests(slow))[0]?.aborted).toBe(true));
    await new Promise((r) => setTimeout(r, 1_500)); // past the usage Queue's batch timeout
    expect(await usageRows(tenant.id)).toHaveLength(1);
  });

  it("records a client that leaves before a non-streamed answer, once, and aborts the backend call", async () => {
    const tenant = await createTenant({ requests_per_minute: 100 });
    const { model: slowModel, backend: slow } = await peerServedModel({
      mode: "slow",
      delayMs: 1_000,
    });
    const leaving = new AbortController();
    const pending = chat(tenant.key, slowModel.name, {}, {}, leaving.signal);
    await eventually(async () => expect(await peerRequests(slow)).toHaveLength(1));
    leaving.abort();
    await expect(pending).rejects.toThrow();
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row).toMatchObject({ outcome: "client_disconnect", status: 499 });
    await eventually(async () => expect((await peerRequests(slow))[0]?.aborted).toBe(true));
    await new Promise((r) => setTimeout(r, 1_500)); // past the hold and the usage Queue's batch timeout
    expect(await usageRows(tenant.id)).toHaveLength(1);
    // The backend was not blamed: the next request goes to it.
    await setPeerMode(slow, { mode: "ok" });
    expect((await chat(tenant.key, slowModel.name)).status).toBe(200);
  });

  it("holds an answer slower than holdAfterMs open with heartbeats, then sends it whole and bills it", async () => {
    const tenant = await createTenant();
    const { model: late } = await peerServedModel({
      mode: "ok",
      firstByteMs: holdAfterMs + 2 * heartbeatMs,
    });
    const started = Date.now();
    const res = await chat(tenant.key, late.name, { max_tokens: 3 });
    // answered (200, JSON) before the backend was: the client's connection is in use
    expect(Date.now() - started).toBeLessThan(holdAfterMs + heartbeatMs);
    expect([res.status, res.headers.get("content-type")]).toEqual([200, "application/json"]);
    const text = await res.text();
    expect(text).toMatch(/^ +\{/);
    const answer = JSON.parse(text);
    expect(answer.choices[0].message.content).toBe("tok tok tok");
    // billed as any answer: the backend's usage, ok
    const rows = await waitForUsageRows(tenant.id, 1);
    expect(rows.map((r) => [r.status, r.outcome, r.prompt_tokens, r.completion_tokens])).toEqual([
      [200, "ok", answer.usage.prompt_tokens, 3],
    ]);

    // a stream: comments first, then the backend's events
    const stream = await chat(tenant.key, late.name, { stream: true, max_tokens: 2 });
    expect(stream.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const body = await stream.text();
    expect(body.startsWith(": keep-alive\n\n")).toBe(true);
    expect((await sseEvents(new Response(body))).at(-1)).toBe("[DONE]");
  });

  it("carries a refusal that comes after the answer was held in its body, billed with the refusal's status", async () => {
    const tenant = await createTenant();
    // each on a backend of its own: the first 503 has the gateway avoid its backend a while
    const lateFleet = async () => {
      const {
        model,
        backends: [backend = ""],
      } = await fleet(1);
      await setPeerMode(backend, { mode: "error", firstByteMs: holdAfterMs + heartbeatMs });
      return model.name;
    };
    const res = await chat(tenant.key, await lateFleet());
    expect(res.status).toBe(200);
    expect(JSON.parse(await res.text()).error).toMatchObject({ code: "no_backend_available" });
    const stream = await chat(tenant.key, await lateFleet(), { stream: true });
    expect(stream.status).toBe(200);
    const events = await sseEvents(stream);
    expect(JSON.parse(events.at(-1) ?? "{}").error.code).toBe("no_backend_available");
    const rows = await waitForUsageRows(tenant.id, 2);
    expect(rows.map((r) => [r.status, r.outcome])).toEqual([
      [503, "backend_error"],
      [503, "backend_error"],
    ]);
  });

  it("aborts the backend call when a client leaves a held answer, and bills 499 with no tokens", async () => {
    const tenant = await createTenant({ concurrent_streams: 1 });
    const { model: late, backend } = await peerServedModel({ mode: "ok", firstByteMs: 20_000 });
    for (const stream of [false, true]) {
      const res = await chat(tenant.key, late.name, { stream });
      const reader = defined(res.body).getReader();
      await reader.read(); // the first heartbeat
      await reader.cancel();
    }
    await eventually(async () => {
      const received = await peerRequests(backend);
      expect(received.map((r) => r.aborted)).toEqual([true, true]);
    });
    const rows = await waitForUsageRows(tenant.id, 2);
    for (const row of rows)
      expect(row).toMatchObject({ status: 499, outcome: "client_disconnect", prompt_tokens: 0 });
    // the stream's slot is free again
    await setPeerMode(backend, { mode: "ok" });
    const next = await chat(tenant.key, late.name, { stream: true, max_tokens: 1 });
    expect(next.status).toBe(200);
    await next.text();
  });

  it("ends the client's stream with an error event when the backend dies mid-stream, recorded once", async () => {
    const tenant = await createTenant();
    const { model: cutModel, backend: cut } = await peerServedModel({ mode: "cut" });
    const res = await chat(tenant.key, cutModel.name, { stream: true, max_tokens: 10 });
    expect(res.status).toBe(200);
    const events = await sseEvents(res);
    expect(events.slice(0, 2).map((e) => JSON.parse(e).choices[0].delta.content)).toEqual([
      "tok ",
      "tok ",
    ]);
    expect(JSON.parse(events.at(-1) ?? "{}").error.code).toBe("backend_stream_failed");
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row).toMatchObject({ outcome: "backend_error", completion_tokens: 2, backend_id: cut });
  });

  it("records a stream the backend ended with an error event as backend_error, once, though it ended cleanly", async () => {
    const tenant = await createTenant();
    const { model: failingModel, backend: failing } = await peerServedModel({
      mode: "error_event",
    });
    const res = await chat(tenant.key, failingModel.name, { stream: true, max_tokens: 10 });
    expect(res.status).toBe(200);
    const events = await sseEvents(res);
    expect(events.at(-1)).toBe("[DONE]");
    expect(JSON.parse(events.at(-2) ?? "{}").error.code).toBe("engine_error");
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row).toMatchObject({
      outcome: "backend_error",
      status: 200,
      completion_tokens: 2,
      backend_id: failing,
    });
    await new Promise((r) => setTimeout(r, 1_500)); // past the usage Queue's batch timeout
    expect(await usageRows(tenant.id)).toHaveLength(1);
  });
});

describe("routing and failover", () => {
  it("keeps one adapter's requests on one backend (rendezvous affinity)", async () => {
    const { model, backends } = await fleet(3);
    const tenant = await createTenant();
    expect(
      (await upload(tenant.key, uploadForm("sticky", adapterFiles(buildAdapter(model))))).status,
    ).toBe(201);
    for (let i = 0; i < 6; i += 1) expect((await chat(tenant.key, "sticky")).status).toBe(200);
    const counts = await Promise.all(backends.map(async (b) => (await peerRequests(b)).length));
    expect(counts.sort()).toEqual([0, 0, 6]);
  });

  /** A tenant with one adapter on a 2-backend fleet, and the adapter's backend order. */
  async function adapterOnTwoBackends() {
    const { model, backends } = await fleet(2);
    const tenant = await createTenant();
    const res = await upload(tenant.key, uploadForm("routed", adapterFiles(buildAdapter(model))));
    const { id } = (await res.json()) as { id: string };
    const body = { model: "routed", messages: [{ role: "user", content: "hello there" }] };
    const order = await chatOrder(tenant, { adapterId: id, baseModel: model.name }, body, backends);
    return { tenant, order };
  }

  it("fails over to the next backend when the preferred one answers 5xx or cannot be reached", async () => {
    for (const mode of ["error", "reset"] as const) {
      const { tenant, order } = await adapterOnTwoBackends();
      await setPeerMode(defined(order[0]), { mode });
      const res = await chat(tenant.key, "routed");
      expect(res.status).toBe(200);
      expect(((await res.json()) as { backend: string }).backend).toBe(order[1]);
      const [row] = await waitForUsageRows(tenant.id, 1);
      expect(row).toMatchObject({ outcome: "ok", backend_id: order[1] });
    }
  });

  it("tries the next backend when one answers 429 (queue full), and passes the last 429 on", async () => {
    const { tenant, order } = await adapterOnTwoBackends();
    await setPeerMode(defined(order[0]), { mode: "busy" });
    const served = await chat(tenant.key, "routed");
    expect(((await served.json()) as { backend: string }).backend).toBe(order[1]);
    await setPeerMode(defined(order[1]), { mode: "busy" });
    const refused = await chat(tenant.key, "routed");
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("queue_full");
    expect(refused.headers.get("retry-after")).toBe("1");
    // A busy backend is not marked failed: once it has room it is first again.
    await setPeerMode(defined(order[0]), { mode: "ok" });
    const back = await chat(tenant.key, "routed");
    expect(((await back.json()) as { backend: string }).backend).toBe(order[0]);
  });

  it("spreads base-model conversations over the backends, whatever id the client repeats", async () => {
    const { model, backends } = await fleet(2);
    const tenant = await createTenant();
    for (let i = 0; i < 24; i += 1) {
      const messages = [{ role: "user", content: `conversation ${i}` }];
      const res = await chat(tenant.key, model.name, { messages }, { "x-request-id": "same" });
      expect(res.status).toBe(200);
      await res.text();
    }
    const counts = await Promise.all(backends.map(async (b) => (await peerRequests(b)).length));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(24);
    // 24 conversations, each hashed by its own head: all on one backend has probability 2^-23
    expect(Math.min(...counts)).toBeGreaterThan(0);
  });

  it("skips a backend where nothing listens, and answers 503 when no backend is left", async () => {
    const model = await registerBaseModel(tinyModel());
    const dead = unique("dead");
    await admin("POST", "/backends", {
      id: dead,
      url: env.TEST_PEER_URLS[1],
      base_model: model.name,
    });
    const tenant = await createTenant();
    const down = await chat(tenant.key, model.name);
    expect(down.status).toBe(503);
    expect(((await down.json()) as { error: { code: string } }).error.code).toBe(
      "no_backend_available",
    );
    const live = await registerPeerBackend(model.name);
    const up = await chat(tenant.key, model.name);
    expect(up.status).toBe(200);
    expect(((await up.json()) as { backend: string }).backend).toBe(live);
    const rows = await waitForUsageRows(tenant.id, 2);
    expect(rows.map((r) => r.outcome).sort()).toEqual(["backend_error", "ok"]);
  });

  it("does not route to a draining backend", async () => {
    const { model, backends } = await fleet(2);
    const tenant = await createTenant();
    await admin("POST", `/backends/${backends[0]}/drain`);
    for (let i = 0; i < 4; i += 1) {
      const res = await chat(tenant.key, model.name, {
        messages: [{ role: "user", content: `n ${i}` }],
      });
      expect(((await res.json()) as { backend: string }).backend).toBe(backends[1]);
    }
  });

  it("passes a backend's 4xx through and bills it once with no tokens", async () => {
    const model = await registerBaseModel(tinyModel());
    const id = unique("wrongsecret");
    // A backend URL whose path the peer does not serve answers 404.
    await admin("POST", "/backends", { id, url: `${peerUrl(id)}/nowhere`, base_model: model.name });
    const tenant = await createTenant();
    const res = await chat(tenant.key, model.name);
    expect(res.status).toBe(404);
    const [row] = await waitForUsageRows(tenant.id, 1);
    expect(row).toMatchObject({
      status: 404,
      outcome: "invalid",
      prompt_tokens: 0,
      completion_tokens: 0,
    });
  });
});

describe("usage endpoint", () => {
  it("sums the tenant's own usage per model", async () => {
    const { model } = await fleet(1);
    const tenant = await createTenant();
    for (const max of [2, 3])
      expect((await chat(tenant.key, model.name, { max_tokens: max })).status).toBe(200);
    const usage = await eventually(async () => {
      const u = (await (await call(tenant.key, "GET", "/v1/usage")).json()) as {
        requests: number;
        completion_tokens: number;
        total_tokens: number;
        data: { model: string }[];
      };
      expect(u.requests).toBe(2);
      return u;
    });
    expect(usage).toMatchObject({ completion_tokens: 5, total_tokens: 9 });
    expect(usage.data.map((d) => d.model)).toEqual([model.name]);
    const viaAdmin = await admin<{ requests: number }>("GET", `/usage?tenant_id=${tenant.id}`);
    expect(viaAdmin.requests).toBe(2);
    expect((await call(tenant.key, "GET", "/v1/usage?start=yesterday")).status).toBe(400);
  });
});
