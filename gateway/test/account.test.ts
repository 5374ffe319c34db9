// GET /v1/me and GET /v1/usage with group_by and latency percentiles: what the console
// and the CLI read instead of probing scopes and asking once per day.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { recordUsage, type UsageRecord } from "../src/usage/record.ts";
import {
  adapterFiles,
  admin,
  call,
  chat,
  createTenant,
  defined,
  eventually,
  issueKey,
  registerBaseModel,
  registerPeerBackend,
  tinyModel,
  unique,
  upload,
  uploadForm,
  usageRows,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

type Latency = { p50: number | null; p90: number | null; p99: number | null };
type UsageLine = {
  day?: string;
  model?: string;
  adapter_id?: string | null;
  adapter?: string | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  errors: number;
  latency_ms: Latency;
};
type Usage = UsageLine & { group_by: string[]; data: UsageLine[] };

describe("GET /v1/me", () => {
  it("tells any valid key its tenant, prefix, scopes and limits", async () => {
    const tenant = await createTenant(
      { requests_per_minute: 60, monthly_token_quota: 1_000_000, max_rank: 32 },
      ["inference"],
    );
    const expiresAt = Date.now() + 3_600_000;
    const writer = await issueKey(tenant.id, ["adapters:write"], {
      name: "uploader",
      expires_at: expiresAt,
    });
    const res = await call(writer, "GET", "/v1/me");
    expect(res.status).toBe(200);
    const me = (await res.json()) as {
      tenant: unknown;
      key: { id: string; prefix: string; created_at: number } & Record<string, unknown>;
      limits: unknown;
    };
    expect(me.tenant).toEqual({ id: tenant.id, name: tenant.name });
    expect(writer.startsWith(me.key.prefix)).toBe(true);
    expect(me.key.prefix.length).toBeLessThan(writer.length / 2);
    expect(me.key).toMatchObject({
      name: "uploader",
      scopes: ["adapters:write"],
      expires_at: expiresAt,
    });
    expect(me.key.id).toMatch(/^key_/);
    expect(JSON.stringify(me)).not.toContain(writer);
    expect(me.limits).toEqual({
      requests_per_minute: 60,
      tokens_per_minute: null,
      concurrent_streams: null,
      monthly_token_quota: 1_000_000,
      max_adapters: 100,
      max_adapter_bytes: 104_857_600,
      max_rank: 32,
      allowed_base_models: [],
    });
    const reader = (await (await call(tenant.key, "GET", "/v1/me")).json()) as {
      key: { scopes: string[]; id: string };
    };
    expect(reader.key.scopes).toEqual(["inference"]);
    expect(reader.key.id).not.toBe(me.key.id);
  });

  it("is 401 for a bad key and 403 for a suspended tenant", async () => {
    expect((await call(`lf_live_${"x".repeat(40)}`, "GET", "/v1/me")).status).toBe(401);
    const tenant = await createTenant();
    await admin("POST", `/tenants/${tenant.id}/suspend`);
    const res = await call(tenant.key, "GET", "/v1/me");
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("tenant_suspended");
  });
});

describe("GET /v1/usage grouped, with latency percentiles", () => {
  const dayA = Date.UTC(2026, 10, 24);
  const dayB = Date.UTC(2026, 10, 25);
  const hour = 3_600_000;

  /** Rows written as the inference path writes them, at chosen times and latencies. */
  async function seed(tenantId: string, adapterId: string) {
    const row = (r: Partial<UsageRecord>, at: number) =>
      recordUsage(
        env.DB,
        {
          requestKey: unique("req"),
          requestId: "seeded",
          tenantId,
          keyId: "key_seeded",
          endpoint: "/v1/chat/completions",
          model: "bot",
          adapterId,
          backendId: "b",
          promptTokens: 2,
          completionTokens: 3,
          cachedTokens: 1,
          status: 200,
          outcome: "ok",
          latencyMs: 0,
          ...r,
        },
        at,
      );
    // Day A, the adapter "bot": latencies 1..100 in a scrambled order, a refusal, and a
    // stream the backend ended with an error event.
    for (let i = 0; i < 100; i += 1) await row({ latencyMs: ((i * 37) % 100) + 1 }, dayA + hour);
    await row(
      {
        status: 429,
        outcome: "rate_limited",
        promptTokens: 0,
        completionTokens: 0,
        cachedTokens: 0,
      },
      dayA + 2 * hour,
    );
    await row({ outcome: "backend_error", latencyMs: 5_000 }, dayA + 3 * hour);
    // Day B, the base model: three answers and a client that left, each of its 2 prompt
    // tokens cached.
    const base = { model: "base", adapterId: null, cachedTokens: 2 };
    for (const latencyMs of [30, 10, 20]) await row({ ...base, latencyMs }, dayB + hour);
    await row(
      { ...base, status: 499, outcome: "client_disconnect", latencyMs: 7 },
      dayB + 2 * hour,
    );
  }

  const usageOf = async (key: string, query: string) => {
    const res = await call(key, "GET", `/v1/usage?start=${dayA}&end=${dayB + 24 * hour}${query}`);
    expect(res.status, await res.clone().text()).toBe(200);
    return (await res.json()) as Usage;
  };

  it("sums per day, model and adapter, with errors and nearest-rank latency of ok requests", async () => {
    const model = await registerBaseModel(tinyModel());
    await registerPeerBackend(model.name);
    const tenant = await createTenant();
    const uploaded = await upload(tenant.key, uploadForm("bot", adapterFiles(buildAdapter(model))));
    const adapterId = ((await uploaded.json()) as { id: string }).id;
    await seed(tenant.id, adapterId);
    const other = await createTenant();
    await seed(other.id, adapterId); // another tenant's rows never count

    const byDayAndModel = await usageOf(tenant.key, "&group_by=day,model");
    expect(byDayAndModel.group_by).toEqual(["day", "model"]);
    expect(byDayAndModel.data).toEqual([
      {
        day: "2026-11-24",
        model: "bot",
        requests: 102,
        prompt_tokens: 202,
        prompt_tokens_details: { cached_tokens: 101 },
        completion_tokens: 303,
        total_tokens: 505,
        errors: 2,
        latency_ms: { p50: 50, p90: 90, p99: 99 },
      },
      {
        day: "2026-11-25",
        model: "base",
        requests: 4,
        prompt_tokens: 8,
        prompt_tokens_details: { cached_tokens: 8 },
        completion_tokens: 12,
        total_tokens: 20,
        errors: 1,
        latency_ms: { p50: 20, p90: 30, p99: 30 },
      },
    ]);
    // Totals: 103 ok latencies, 1..100 plus 10, 20, 30: ranks 52, 93, 102.
    expect(byDayAndModel).toMatchObject({
      requests: 106,
      errors: 3,
      total_tokens: 525,
      prompt_tokens_details: { cached_tokens: 109 },
      latency_ms: { p50: 49, p90: 90, p99: 99 },
    });

    const byAdapter = await usageOf(tenant.key, "&group_by=adapter");
    expect(byAdapter.data.map((l) => [l.adapter_id, l.adapter, l.requests])).toEqual([
      [null, null, 4],
      [adapterId, "bot", 102],
    ]);
    const byDay = await usageOf(tenant.key, "&group_by=day");
    expect(byDay.data.map((l) => [l.day, l.requests, l.latency_ms.p99])).toEqual([
      ["2026-11-24", 102, 99],
      ["2026-11-25", 4, 30],
    ]);
    const byModel = await usageOf(tenant.key, "");
    expect(byModel.group_by).toEqual(["model"]);
    expect(byModel.data.map((l) => l.model)).toEqual(["base", "bot"]);
    const viaAdmin = await admin<Usage>(
      "GET",
      `/usage?tenant_id=${tenant.id}&start=${dayA}&end=${dayB + 24 * hour}&group_by=day,model`,
    );
    expect(viaAdmin.data).toEqual(byDayAndModel.data);

    const modelFirst = await usageOf(tenant.key, "&group_by=model,day");
    expect(modelFirst.data.map((l) => [l.model, l.day])).toEqual([
      ["base", "2026-11-25"],
      ["bot", "2026-11-24"],
    ]);
    const nothing = await call(tenant.key, "GET", "/v1/usage?start=0&end=1&group_by=day");
    expect(await nothing.json()).toMatchObject({
      requests: 0,
      errors: 0,
      total_tokens: 0,
      prompt_tokens_details: { cached_tokens: 0 },
      latency_ms: { p50: null, p90: null, p99: null },
      data: [],
    });
  });

  it("refuses an unknown or repeated group", async () => {
    const tenant = await createTenant();
    for (const groupBy of ["week", "day,day", "", "day,"]) {
      const res = await call(tenant.key, "GET", `/v1/usage?group_by=${groupBy}`);
      expect(res.status).toBe(400);
      expect(((await res.json()) as { error: { param: string } }).error.param).toBe("group_by");
    }
  });

  it("reports the latency the gateway recorded for a real request", async () => {
    const model = await registerBaseModel(tinyModel());
    await registerPeerBackend(model.name);
    const tenant = await createTenant();
    expect((await chat(tenant.key, model.name)).status).toBe(200);
    const usage = await eventually(async () => {
      const u = (await (await call(tenant.key, "GET", "/v1/usage?group_by=day")).json()) as Usage;
      expect(u.requests).toBe(1);
      return u;
    });
    expect(usage.data).toHaveLength(1);
    expect(usage.data[0]?.day).toBe(new Date().toISOString().slice(0, 10));
    // one request: every percentile is its recorded latency
    const [row] = await usageRows(tenant.id);
    const latency = defined(row).latency_ms;
    expect(usage.latency_ms).toEqual({ p50: latency, p90: latency, p99: latency });
    expect(usage.data[0]?.latency_ms).toEqual(usage.latency_ms);
  });
});
