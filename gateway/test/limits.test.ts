import { env, listDurableObjectIds } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import type { TenantLimits } from "../src/auth/principal.ts";
import { admit, emptyLimitState, leaseMs, settle } from "../src/limits/limit-state.ts";
import {
  admin,
  type BaseModelSpec,
  chat,
  createTenant,
  defined,
  eventually,
  peerRequests,
  registerBaseModel,
  registerPeerBackend,
  setPeerMode,
  tinyModel,
  unique,
  usageRows,
} from "./helpers/gateway-client.ts";

const unlimited: TenantLimits = {
  requestsPerMinute: null,
  tokensPerMinute: null,
  concurrentStreams: null,
  monthlyTokenQuota: null,
};

/** Runs `body`; if a UTC minute boundary passed meanwhile (windows reset), runs it once more. */
async function withinOneMinute(body: () => Promise<void>): Promise<void> {
  const minute = Math.floor(Date.now() / 60_000);
  try {
    await body();
  } catch (error) {
    if (Math.floor(Date.now() / 60_000) === minute) throw error;
    await body();
  }
}

function limiter(name = unique("limiter")) {
  return env.LIMITER.get(env.LIMITER.idFromName(name));
}

describe("limits through the gateway, 100 concurrent requests", () => {
  let model: BaseModelSpec;
  beforeAll(async () => {
    model = await registerBaseModel(tinyModel());
  });

  it("admits exactly requests_per_minute and answers the rest 429 with Retry-After in OpenAI's shape", async () => {
    await withinOneMinute(async () => {
      const backend = await registerPeerBackend(model.name);
      const tenant = await createTenant({ requests_per_minute: 10 });
      const responses = await Promise.all(
        Array.from({ length: 100 }, () => chat(tenant.key, model.name)),
      );
      const statuses = responses.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(10);
      expect(statuses.filter((s) => s === 429)).toHaveLength(90);
      const refused = defined(responses.find((r) => r.status === 429));
      const retryAfter = Number(refused.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(((await refused.json()) as { error: unknown }).error).toEqual({
        message: "Rate limit reached: 10 requests per minute",
        type: "rate_limit_error",
        param: null,
        code: "requests_per_minute",
      });
      expect(await peerRequests(backend)).toHaveLength(10);
      const rows = await eventually(async () => {
        const r = await usageRows(tenant.id);
        expect(r).toHaveLength(100);
        return r;
      });
      expect(rows.filter((r) => r.outcome === "ok")).toHaveLength(10);
      expect(rows.filter((r) => r.outcome === "rate_limited" && r.status === 429)).toHaveLength(90);
    });
  });

  it("admits exactly concurrent_streams streams and frees the slots when they end", async () => {
    const backend = await registerPeerBackend(model.name);
    // Each stream lives >= 600 ms even if the runtime reads ahead of the client.
    await setPeerMode(backend, { mode: "slow", delayMs: 200 });
    const tenant = await createTenant({ concurrent_streams: 5 });
    const responses = await Promise.all(
      Array.from({ length: 100 }, () =>
        chat(tenant.key, model.name, { stream: true, max_tokens: 3 }),
      ),
    );
    const open = responses.filter((r) => r.status === 200);
    expect(open).toHaveLength(5); // no stream can finish before its body is read
    const refused = responses.filter((r) => r.status === 429);
    expect(refused).toHaveLength(95);
    expect(((await defined(refused[0]).json()) as { error: { code: string } }).error.code).toBe(
      "concurrent_streams",
    );
    await Promise.all(open.map((r) => r.text()));
    await Promise.all(refused.slice(1).map((r) => r.text()));
    await eventually(async () =>
      expect((await chat(tenant.key, model.name, { stream: true, max_tokens: 1 })).status).toBe(
        200,
      ),
    );
  });
});

describe("reservations that bound the truth", () => {
  it("refuses at once what a 2,000-token monthly quota cannot hold, however few characters it takes", async () => {
    // 1,300 x "鑫" is ~3,900 real tokens: the old estimate (JSON characters / 4) reserved 331
    // and admitted five of these under a 2,000-token quota.
    const model = await registerBaseModel(tinyModel());
    const backend = await registerPeerBackend(model.name);
    const tenant = await createTenant({ monthly_token_quota: 2000 });
    const responses = await Promise.all(
      Array.from({ length: 5 }, () =>
        chat(tenant.key, model.name, {
          messages: [{ role: "user", content: "鑫".repeat(1300) }],
          max_tokens: 1,
        }),
      ),
    );
    for (const response of responses) {
      expect(response.status).toBe(429);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe(
        "monthly_token_quota",
      );
    }
    expect(await peerRequests(backend)).toHaveLength(0);
    // what fits is served, and settled with the backend's own count
    const small = await chat(tenant.key, model.name, { max_tokens: 2 });
    expect(small.status).toBe(200);
    await small.text();
    await eventually(async () =>
      expect(await limiter(tenant.id).snapshot()).toMatchObject({ monthTokens: 4, open: {} }),
    );
  });
});

describe("limit changes", () => {
  it("skips the Durable Object for an unlimited tenant, and applies new limits at once", async () => {
    await withinOneMinute(async () => {
      const model = await registerBaseModel(tinyModel());
      await registerPeerBackend(model.name);
      const tenant = await createTenant();
      expect((await chat(tenant.key, model.name)).status).toBe(200);
      const ids = await listDurableObjectIds(env.LIMITER);
      const own = env.LIMITER.idFromName(tenant.id);
      expect(ids.some((id) => id.equals(own))).toBe(false);

      await admin("PATCH", `/tenants/${tenant.id}`, { requests_per_minute: 1 });
      expect((await chat(tenant.key, model.name)).status).toBe(200);
      expect((await chat(tenant.key, model.name)).status).toBe(429);
      await admin("PATCH", `/tenants/${tenant.id}`, { requests_per_minute: null });
      expect((await chat(tenant.key, model.name)).status).toBe(200);
    });
  });
});

describe("TenantLimiter Durable Object, 100 concurrent admissions", () => {
  const request = (i: number, estimatedTokens: number, limits: TenantLimits) => ({
    requestKey: `r${i}`,
    estimatedTokens,
    stream: false,
    limits,
  });

  it("reserves tokens per minute exactly, and reconciles with real usage", async () => {
    await withinOneMinute(async () => {
      const stub = limiter();
      const limits = { ...unlimited, tokensPerMinute: 1000 };
      const results = await Promise.all(
        Array.from({ length: 100 }, (_, i) => stub.admit(request(i, 100, limits))),
      );
      const admitted = results.flatMap((r, i) => (r.ok ? [`r${i}`] : []));
      expect(admitted).toHaveLength(10);
      expect(results.find((r) => !r.ok)).toMatchObject({ ok: false, code: "tokens_per_minute" });
      // Two requests used only 30 tokens each: 140 tokens come back, one more request fits.
      expect(await stub.settle(defined(admitted[0]), 30)).toBe(true);
      expect(await stub.settle(defined(admitted[1]), 30)).toBe(true);
      expect(await stub.settle(defined(admitted[1]), 30)).toBe(false); // settling twice changes nothing
      expect((await stub.snapshot()).minuteTokens).toBe(860);
      expect((await stub.admit(request(100, 100, limits))).ok).toBe(true);
      expect((await stub.admit(request(101, 100, limits))).ok).toBe(false);
    });
  });

  it("holds the monthly token quota exactly and says when it resets", async () => {
    const stub = limiter();
    const limits = { ...unlimited, monthlyTokenQuota: 2500 };
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => stub.admit(request(i, 100, limits))),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(25);
    const refusal = results.find((r) => !r.ok);
    expect(refusal).toMatchObject({ code: "monthly_token_quota" });
    const now = new Date();
    const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    expect(refusal && !refusal.ok && refusal.retryAfterSeconds).toBeCloseTo(
      (nextMonth - Date.now()) / 1000,
      -2,
    );
  });

  it("keeps its counts across an eviction (state is in storage)", async () => {
    const name = unique("limiter");
    const limits = { ...unlimited, requestsPerMinute: 3 };
    await withinOneMinute(async () => {
      const stub = limiter(`${name}-${Date.now()}`);
      expect((await stub.admit(request(1, 1, limits))).ok).toBe(true);
      expect((await stub.admit(request(2, 1, limits))).ok).toBe(true);
      const { evictDurableObject } = await import("cloudflare:test");
      await evictDurableObject(stub);
      expect((await stub.admit(request(3, 1, limits))).ok).toBe(true);
      expect((await stub.admit(request(4, 1, limits))).ok).toBe(false);
    });
  });
});

describe("limit state (pure)", () => {
  const t0 = Date.UTC(2026, 0, 31, 23, 59, 30);

  it("starts a fresh minute window and month", () => {
    const state = emptyLimitState(t0);
    const limits = { ...unlimited, requestsPerMinute: 1, monthlyTokenQuota: 100 };
    expect(
      admit(state, { requestKey: "a", estimatedTokens: 60, stream: false, limits }, t0).ok,
    ).toBe(true);
    expect(
      admit(state, { requestKey: "b", estimatedTokens: 10, stream: false, limits }, t0 + 1_000),
    ).toMatchObject({
      ok: false,
      code: "requests_per_minute",
      retryAfterSeconds: 29,
    });
    const nextMonth = t0 + 30_000;
    expect(
      admit(state, { requestKey: "c", estimatedTokens: 100, stream: false, limits }, nextMonth).ok,
    ).toBe(true);
  });

  it("charges an overrun to the current window but refunds only the window it reserved in", () => {
    const state = emptyLimitState(t0);
    const limits = { ...unlimited, tokensPerMinute: 1000 };
    admit(state, { requestKey: "over", estimatedTokens: 100, stream: false, limits }, t0);
    admit(state, { requestKey: "under", estimatedTokens: 100, stream: false, limits }, t0);
    const later = t0 + 40_000; // next minute
    settle(state, "over", 150, later);
    expect(state.minuteTokens).toBe(50);
    settle(state, "under", 10, later);
    expect(state.minuteTokens).toBe(50);
    expect(state.open).toEqual({});
  });

  it("admits a key that is still open again without reserving twice (a batch line run again)", () => {
    const state = emptyLimitState(t0);
    const limits = { ...unlimited, tokensPerMinute: 1000, concurrentStreams: 1 };
    const line = { requestKey: "batch_1-0", estimatedTokens: 300, stream: false, limits };
    expect(admit(state, line, t0).ok).toBe(true);
    expect(admit(state, line, t0 + 1).ok).toBe(true);
    expect(state.minuteTokens).toBe(300);
    expect(state.minuteRequests).toBe(1);
    expect(settle(state, "batch_1-0", 120, t0 + 2)).toBe(true);
    expect(state.minuteTokens).toBe(120);
    expect(settle(state, "batch_1-0", 120, t0 + 3)).toBe(false);
  });

  it("releases a stream slot whose settle never came after the lease", () => {
    const state = emptyLimitState(t0);
    const limits = { ...unlimited, concurrentStreams: 1 };
    expect(
      admit(state, { requestKey: "s1", estimatedTokens: 1, stream: true, limits }, t0).ok,
    ).toBe(true);
    expect(
      admit(state, { requestKey: "s2", estimatedTokens: 1, stream: true, limits }, t0 + 1).ok,
    ).toBe(false);
    expect(
      admit(state, { requestKey: "s3", estimatedTokens: 1, stream: true, limits }, t0 + leaseMs).ok,
    ).toBe(true);
  });
});
