// The whole stack on loopback: the gateway Worker (`wrangler dev`, local D1/KV/R2/DO) in
// front of the real backend, which fetches tenants' adapters through the gateway's signed
// URLs. Hostile input at the gateway gets its status and OpenAI's error shape and the
// stack serves right after; then 200 concurrent streaming clients of 4 tenants: no 5xx,
// every stream complete with usage, the backend idle after.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runLoad } from "../../bench/load/load-run.ts";
import { fixturesDir, haveFixtures } from "../backend/backend-process.ts";
import { type Tenant, uploadAdapter } from "../gateway/gateway-admin.ts";
import { type Stack, startStack } from "../gateway/gateway-stack.ts";
import { expectIdle, expectOpenAIError, post } from "./backend-probe.ts";

const CLIENTS = 200;
const TENANTS = 4;
const ADAPTERS = ["tiny-r4", "tiny-r8", "tiny-mix-00"];
const SECRET = "reliability-gateway-load-secret";

const utf8 = (text: string) => new TextEncoder().encode(text);
const chat = (extra: object) => ({
  model: "tiny-llama",
  messages: [{ role: "user", content: "hi" }],
  max_tokens: 2,
  ...extra,
});

describe.skipIf(!haveFixtures)("through the gateway", () => {
  let stack: Stack | undefined;
  const tenants: Tenant[] = [];

  beforeAll(async () => {
    stack = await startStack(SECRET, ["--max-num-seqs", "256", "--max-model-len", "256"]);
    for (let t = 0; t < TENANTS; t++) {
      const tenant = await stack.admin.createTenant(`load-${t}`);
      for (const name of ADAPTERS)
        await uploadAdapter(
          stack.gateway.url,
          tenant.key,
          name,
          join(fixturesDir, "adapters", name),
        );
      tenants.push(tenant);
    }
  });
  afterAll(async () => {
    await stack?.stop();
  });

  const asTenant = (t: number, body: unknown, path = "/v1/chat/completions") =>
    post(`${stack?.gateway.url}${path}`, body, { authorization: `Bearer ${tenants[t]?.key}` });
  const expectServed = async () => {
    const response = await asTenant(0, chat({ model: "tiny-r8" }));
    expect(response.status, await response.clone().text()).toBe(200);
    await response.text();
  };

  const BAD = [
    { name: "malformed JSON", body: '{"model":', status: 400, code: "invalid_json" },
    { name: "a JSON array", body: "[1]", status: 400 },
    { name: "model an object", body: chat({ model: { x: 1 } }), status: 400, param: "model" },
    {
      name: "another tenant's adapter",
      body: chat({ model: "load-0/tiny-r8" }),
      tenant: 1,
      status: 404,
      code: "model_not_found",
    },
    {
      name: "path traversal",
      body: chat({ model: "../../etc" }),
      status: 404,
      code: "model_not_found",
    },
    {
      name: "logit_bias",
      body: chat({ logit_bias: { "1": 5 } }),
      status: 400,
      code: "unsupported_parameter",
    },
    {
      name: "a tool name that is not one",
      body: chat({ tools: [{ type: "function", function: { name: "a b" } }] }),
      status: 400,
      param: "tools[0].function.name",
    },
    {
      name: "huge max_tokens",
      body: chat({ max_tokens: 1e12 }),
      status: 400,
      code: "context_length_exceeded",
    },
    {
      name: "negative temperature",
      body: chat({ temperature: -1 }),
      status: 400,
      param: "temperature",
    },
    { name: "n too large", body: chat({ n: 100 }), status: 400, param: "n" },
  ];

  it.each(BAD)("$name: $status, OpenAI error shape, served right after", async (c) => {
    await expectOpenAIError(await asTenant(c.tenant ?? 0, c.body), c.status, {
      ...(c.code === undefined ? {} : { code: c.code }),
      ...(c.param === undefined ? {} : { param: c.param }),
    });
    await expectServed();
  });

  // Both found by this suite (the gateway read c.req.json(): U+FFFD served, no bound).
  it("refuses invalid UTF-8 in the body with 400 invalid_json instead of serving U+FFFD", async () => {
    const body = new Uint8Array([
      ...utf8('{"model":"tiny-llama","max_tokens":2,"messages":[{"role":"user","content":"'),
      0xff,
      0xfe,
      ...utf8('"}]}'),
    ]);
    await expectOpenAIError(await asTenant(0, body), 400, { code: "invalid_json" });
  });

  it("refuses a 20 MB body at the edge with 413; the backend never sees it", async () => {
    const before = stack?.backend.logs().length ?? 0;
    const response = await asTenant(
      0,
      chat({ messages: [{ role: "user", content: "x".repeat(20_000_000) }] }),
    );
    await expectOpenAIError(response, 413);
    // refused at the edge: the backend never saw it
    expect(stack?.backend.logs().slice(before)).not.toContain('"status":413');
  });

  it("no 5xx, every stream complete with usage, the backend idle after", async () => {
    // One run per tenant, in parallel: each tenant's clients use its key and adapters.
    const gatewayUrl = stack?.gateway.url ?? "";
    const reports = await Promise.all(
      tenants.map((tenant) =>
        runLoad({
          url: gatewayUrl,
          clients: CLIENTS / TENANTS,
          durationS: 15,
          models: ["tiny-llama", ...ADAPTERS],
          maxTokens: 16,
          pids: () => [],
          requestTimeoutMs: 60_000,
          headers: { authorization: `Bearer ${tenant.key}` },
        }),
      ),
    );
    for (const report of reports) {
      console.log(
        `[reliability] gateway load (one tenant): ${JSON.stringify({ requests: report.requests, latencyMs: report.latencyMs, throughput: report.throughput, problems: report.problems })}`,
      );
      expect(report.problems).toEqual([]);
      expect(report.requests.byVerdict).toEqual({ complete: report.requests.total });
    }
    await expectIdle(stack?.backend.url ?? "", 10_000, stack?.backendSecret ?? null);
  });
});
