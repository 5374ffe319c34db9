// The gateway's side of the backend: the backend secret, the `lorafleet` envelope and
// /internal/batch answering NDJSON lines as requests complete.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, fixturesDir, haveFixtures, startBackend } from "./backend-process.ts";

const SECRET = "test-backend-secret-0123456789";

describe.skipIf(!haveFixtures)("gateway contract", () => {
  let backend: Backend;
  const post = (path: string, body: unknown, secret: string | null = SECRET) =>
    fetch(`${backend.url}${path}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(secret === null ? {} : { authorization: `Bearer ${secret}` }),
      },
      body: JSON.stringify(body),
    });

  // Stands in for the gateway's signed adapter URLs: serves the fixture adapter's files.
  let files: Server;
  let filesUrl: string;
  const adapterDir = join(fixturesDir, "adapters/tiny-r8");
  const weights = readFileSync(join(adapterDir, "adapter_model.safetensors"));
  const sha256 = createHash("sha256").update(weights).digest("hex");

  beforeAll(async () => {
    files = createServer((req, res) => {
      if (req.url?.startsWith("/weights")) res.end(weights);
      else if (req.url?.startsWith("/config"))
        res.end(readFileSync(join(adapterDir, "adapter_config.json")));
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => files.listen(0, "127.0.0.1", resolve));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    // An empty adapter dir: the adapter can only come through the gateway's URLs.
    backend = await startBackend([
      "--backend-secret",
      SECRET,
      "--adapter-dir",
      join(fixturesDir, "no-adapters"),
      "--adapter-url-allow",
      filesUrl,
    ]);
  });
  afterAll(async () => {
    await backend?.stop();
    files?.close();
  });

  const remoteAdapter = (sha: string) => ({
    id: "adp_1",
    name: "tiny-r8",
    rank: 8,
    sha256: sha,
    config_url: `${filesUrl}/config?sig=1`,
    weights_url: `${filesUrl}/weights?sig=1`,
  });

  it("refuses /v1 and /internal without the secret", async () => {
    const body = { model: "tiny-llama", prompt: "hi", max_tokens: 2 };
    expect((await post("/v1/completions", body, null)).status).toBe(401);
    expect((await post("/v1/completions", body, "wrong-secret-wrong-secret")).status).toBe(401);
    expect((await post("/internal/batch", { requests: [] }, null)).status).toBe(401);
    expect((await post("/v1/completions", body)).status).toBe(200);
  });

  it("answers /health and /ready to anyone (load balancers probe them), /metrics only with the secret", async () => {
    const get = (path: string, secret: string | null) =>
      fetch(`${backend.url}${path}`, {
        headers: secret === null ? {} : { authorization: `Bearer ${secret}` },
      });
    const health = await get("/health", null);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok", load: 0, model: "tiny-llama" });
    expect((await get("/ready", null)).status).toBe(200);
    for (const secret of [null, "wrong-secret-wrong-secret"]) {
      const refused = await get("/metrics", secret);
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
        "invalid_api_key",
      );
    }
    const metrics = await get("/metrics", SECRET);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^lorafleet_running_requests 0$/m);
  });

  it("takes the tenant from the lorafleet field", async () => {
    const response = await post("/v1/completions", {
      model: "tiny-llama",
      prompt: "hi",
      max_tokens: 2,
      lorafleet: { tenant: "t1", request_id: "r1", base_model: "tiny-llama", adapter: null },
    });
    expect(response.status).toBe(200);
    const wrongBase = await post("/v1/completions", {
      model: "x",
      prompt: "hi",
      lorafleet: { tenant: "t1", base_model: "other-model", adapter: null },
    });
    expect(wrongBase.status).toBe(404);
  });

  it("fetches the gateway's adapter through its URLs, checks the sha256, and serves it", async () => {
    const body = { model: "tenant-a/tiny-r8", prompt: "hello", max_tokens: 6, temperature: 0 };
    const viaGateway = await post("/v1/completions", {
      ...body,
      lorafleet: { tenant: "tenant-a", base_model: "tiny-llama", adapter: remoteAdapter(sha256) },
    });
    expect(viaGateway.status).toBe(200);
    const answer = (await viaGateway.json()) as { model: string; choices: { text: string }[] };
    expect(answer.model).toBe("tenant-a/tiny-r8");
    const base = (await (
      await post("/v1/completions", { ...body, model: "tiny-llama" })
    ).json()) as {
      choices: { text: string }[];
    };
    expect(answer.choices[0]?.text).not.toBe(base.choices[0]?.text);

    const tampered = await post("/v1/completions", {
      ...body,
      lorafleet: { tenant: "tenant-a", adapter: { ...remoteAdapter("f".repeat(64)), id: "adp_2" } },
    });
    expect(tampered.status).toBe(400);
    expect(((await tampered.json()) as { error: { code: string } }).error.code).toBe(
      "adapter_invalid",
    );
  });

  it("drops a request whose deadline passes (finish_reason deadline)", async () => {
    const response = await post("/v1/completions", {
      model: "tiny-llama",
      prompt: "never finishes in time",
      max_tokens: 900,
      temperature: 0,
      ignore_eos: true,
      lorafleet: { tenant: "t1", adapter: null, deadline_ms: Date.now() + 300 },
    });
    expect(response.status).toBe(200);
    const answer = (await response.json()) as {
      choices: { finish_reason: string }[];
      usage: { completion_tokens: number };
    };
    expect(answer.choices[0]?.finish_reason).toBe("deadline");
    expect(answer.usage.completion_tokens).toBeLessThan(900);
  });

  it("answers a batch as NDJSON lines, one per request, errors included", async () => {
    const requests = [
      ...Array.from({ length: 6 }, (_, i) => ({
        id: `c${i}`,
        endpoint: "/v1/completions",
        tenant: `tenant-${i % 2}`,
        adapter: null,
        body: { model: "tiny-llama", prompt: `item ${i}`, max_tokens: 4, temperature: 0 },
      })),
      {
        id: "chat",
        endpoint: "/v1/chat/completions",
        tenant: "tenant-0",
        adapter: null,
        body: { model: "tiny-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 3 },
      },
      {
        id: "bad",
        endpoint: "/v1/completions",
        tenant: "tenant-0",
        adapter: null,
        body: { model: "tiny-llama", prompt: "x", temperature: 9 },
      },
    ];
    const response = await post("/internal/batch", { requests });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("application/x-ndjson");
    const lines = (await response.text())
      .trim()
      .split("\n")
      .map(
        (line) => JSON.parse(line) as { id: string; status: number; body: Record<string, unknown> },
      );
    expect(lines.map((line) => line.id).sort()).toEqual(requests.map((r) => r.id).sort());
    for (const line of lines) {
      if (line.id === "bad") {
        expect(line.status).toBe(400);
        expect(line.body.error).toMatchObject({ param: "temperature" });
      } else {
        expect(line.status).toBe(200);
        expect(line.body.usage).toBeTruthy();
      }
    }
  });
  it("refuses repeated ids as a whole, and leaves a body's own `lorafleet` to the item's fields", async () => {
    const item = (id: string, body: object = {}) => ({
      id,
      endpoint: "/v1/completions",
      tenant: "tenant-0",
      adapter: null,
      body: { model: "tiny-llama", prompt: "hi", max_tokens: 1, ...body },
    });
    const twice = await post("/internal/batch", { requests: [item("a"), item("a")] });
    expect(twice.status).toBe(400);
    expect(await twice.json()).toEqual({
      error: {
        message: "request ids must be unique",
        type: "invalid_request_error",
        param: "requests",
        code: null,
      },
    });
    // a batch line is a client's body (checked as the gateway checked it at batch creation):
    // the envelope is the item's tenant/adapter/deadline, so a `lorafleet` in it is ignored
    const answer = await post("/internal/batch", {
      requests: [item("b", { lorafleet: "not an envelope" })],
    });
    const [line] = (await answer.text()).trim().split("\n");
    expect(JSON.parse(line ?? "")).toMatchObject({ id: "b", status: 200 });
  });
});
