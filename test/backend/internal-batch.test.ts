// The gateway's side of the backend: the backend secret, the `lorafleet` envelope and
// /internal/batch answering NDJSON lines as requests complete.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Backend, haveFixtures, startBackend } from "./backend-process.ts";

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

  beforeAll(async () => {
    backend = await startBackend(["--backend-secret", SECRET]);
  });
  afterAll(async () => {
    await backend?.stop();
  });

  it("refuses /v1 and /internal without the secret", async () => {
    const body = { model: "tiny-llama", prompt: "hi", max_tokens: 2 };
    expect((await post("/v1/completions", body, null)).status).toBe(401);
    expect((await post("/v1/completions", body, "wrong-secret-wrong-secret")).status).toBe(401);
    expect((await post("/internal/batch", { requests: [] }, null)).status).toBe(401);
    expect((await post("/v1/completions", body)).status).toBe(200);
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
});
