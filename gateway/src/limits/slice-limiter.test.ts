// Per-minute limits from slices: several isolates (one SliceLimiter each, as each isolate
// has its own) against one real TenantLimiter Durable Object, under concurrency.
import { env } from "cloudflare:test";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { unique } from "../../test/helpers/gateway-client.ts";
import type { TenantLimits } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { emptyLimitState, minuteOf } from "./limit-state.ts";
import { grantSlice, sliceDivisor } from "./slice-grant.ts";
import { SliceLimiter } from "./slice-limiter.ts";

const none: TenantLimits = {
  requestsPerMinute: null,
  tokensPerMinute: null,
  concurrentStreams: null,
  monthlyTokenQuota: null,
};

/** Work the limiter leaves running (a top-up), collected so the test can wait for it. */
function background() {
  const running: Promise<unknown>[] = [];
  return { run: (work: Promise<unknown>) => running.push(work), done: () => Promise.all(running) };
}

/** The real LIMITER namespace, counting the calls made on its stubs. */
function countingLimiter() {
  const calls: string[] = [];
  const LIMITER = new Proxy(env.LIMITER, {
    get(target, prop) {
      if (prop !== "get") {
        const value = Reflect.get(target, prop) as unknown;
        return typeof value === "function" ? value.bind(target) : value;
      }
      return (id: DurableObjectId) => {
        const stub = target.get(id);
        return new Proxy(stub, {
          get(s, method) {
            const value = Reflect.get(s, method) as unknown;
            if (typeof value !== "function") return value;
            return (...args: unknown[]) => {
              calls.push(String(method));
              return Reflect.apply(value, s, args);
            };
          },
        });
      };
    },
  });
  return { env: { ...env, LIMITER } as Env, calls };
}

const snapshotOf = (tenantId: string) =>
  env.LIMITER.get(env.LIMITER.idFromName(tenantId)).snapshot();

/** Retries `body` once when a UTC minute boundary passed during it (windows reset). */
async function withinOneMinute(body: () => Promise<void>): Promise<void> {
  const minute = minuteOf(Date.now());
  try {
    await body();
  } catch (error) {
    if (minuteOf(Date.now()) === minute) throw error;
    await body();
  }
}

describe("grantSlice", () => {
  it("grants 1/8 of what is left, shrinking to one request near the limit, and never more than the limit", () => {
    const state = emptyLimitState(Date.now());
    const limits = { ...none, requestsPerMinute: 100 };
    const sizes: number[] = [];
    for (;;) {
      const grant = grantSlice(state, { returning: null, tokens: 0, limits }, Date.now());
      if (!grant.ok) {
        expect(grant.code).toBe("requests_per_minute");
        break;
      }
      sizes.push(grant.requests ?? 0);
    }
    expect(sizes.slice(0, 4)).toEqual([12, 11, 9, 8]);
    expect(sizes.slice(-8)).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(100);
    expect(Math.max(...sizes)).toBe(Math.floor(100 / sliceDivisor));
  });

  it("holds the asking request's tokens, refuses what the minute cannot hold, and takes back a returned remainder", () => {
    const state = emptyLimitState(Date.now());
    const limits = { ...none, tokensPerMinute: 1000 };
    const now = Date.now();
    expect(grantSlice(state, { returning: null, tokens: 600, limits }, now)).toMatchObject({
      ok: true,
      tokens: 600,
    });
    expect(grantSlice(state, { returning: null, tokens: 401, limits }, now)).toMatchObject({
      ok: false,
      code: "tokens_per_minute",
    });
    const back = { minute: state.minute, requests: 0, tokens: 500 };
    expect(grantSlice(state, { returning: back, tokens: 401, limits }, now)).toMatchObject({
      ok: true,
      tokens: 401,
    });
    expect(state.minuteTokens).toBe(501);
    // an overrun returned after its minute is charged to this one
    grantSlice(
      state,
      { returning: { minute: 0, requests: 0, tokens: -9 }, tokens: 0, limits },
      now,
    );
    expect(state.minuteTokens).toBe(510 + Math.floor(490 / sliceDivisor));
  });
});

describe("SliceLimiter: many isolates, one Durable Object", () => {
  it("admits at most requests_per_minute across 8 isolates; everything granted is admitted or still held", async () => {
    await withinOneMinute(async () => {
      const tenantId = unique("tn_slices");
      const limits = { ...none, requestsPerMinute: 300 };
      const isolates = Array.from({ length: 8 }, () => new SliceLimiter());
      const work = background();
      const results = await Promise.all(
        Array.from({ length: 600 }, (_, i) =>
          (isolates[i % 8] as SliceLimiter).admit(env, tenantId, limits, 0, work.run),
        ),
      );
      await work.done();
      const admitted = results.filter((r) => r.ok).length;
      const heldBy = isolates.map((l) => l.holding(tenantId)?.requests ?? 0);
      const held = heldBy.reduce((a, b) => a + b, 0);
      const refused = results.filter((r) => !r.ok);
      expect(refused.every((r) => !r.ok && r.code === "requests_per_minute")).toBe(true);
      const { minuteRequests } = await snapshotOf(tenantId);
      // never over the limit: everything granted is admitted or still held by an isolate
      expect(minuteRequests).toBeLessThanOrEqual(300);
      expect(admitted + held).toBe(minuteRequests);
      // the undershoot: what isolates hold unspent, at most a slice and a top-up each (each
      // at most 1/8 of the limit)
      const slice = Math.floor(300 / sliceDivisor);
      for (const h of heldBy) expect(h).toBeLessThanOrEqual(2 * slice);
      expect(admitted).toBeGreaterThanOrEqual(300 - 8 * 2 * slice);
    });
  });

  it("never reserves more tokens per minute than the limit over random requests and settles from 6 isolates", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            isolate: fc.nat(5),
            estimate: fc.integer({ min: 1, max: 400 }),
            usedShare: fc.double({ min: 0, max: 1, noNaN: true }),
          }),
          { minLength: 20, maxLength: 120 },
        ),
        async (requests) => {
          await withinOneMinute(async () => {
            const tenantId = unique("tn_slices");
            const limits = { ...none, tokensPerMinute: 5_000 };
            const isolates = Array.from({ length: 6 }, () => new SliceLimiter());
            const work = background();
            let used = 0;
            let outstanding = 0;
            let peak = 0;
            await Promise.all(
              requests.map(async (r) => {
                const limiter = isolates[r.isolate] as SliceLimiter;
                const admission = await limiter.admit(env, tenantId, limits, r.estimate, work.run);
                if (!admission.ok) return;
                outstanding += r.estimate;
                peak = Math.max(peak, used + outstanding);
                await new Promise((resolve) => setTimeout(resolve, 1));
                const actual = Math.floor(r.estimate * r.usedShare);
                limiter.settle(tenantId, admission.minute, r.estimate, actual);
                outstanding -= r.estimate;
                used += actual;
              }),
            );
            await work.done();
            const held = isolates.reduce((sum, l) => sum + (l.holding(tenantId)?.tokens ?? 0), 0);
            const { minuteTokens } = await snapshotOf(tenantId);
            // the Durable Object counts what it granted: the tokens used plus what is still held
            expect(minuteTokens).toBe(used + held);
            expect(minuteTokens).toBeLessThanOrEqual(5_000);
            expect(peak).toBeLessThanOrEqual(5_000);
          });
        },
      ),
      { numRuns: 15 },
    );
  });

  it("costs one Durable Object call for 200 requests of a tenant far under its limits", async () => {
    await withinOneMinute(async () => {
      const counted = countingLimiter();
      const limiter = new SliceLimiter();
      const limits = { ...none, requestsPerMinute: 100_000, tokensPerMinute: 10_000_000 };
      const tenantId = unique("tn_slices");
      const work = background();
      for (let i = 0; i < 200; i += 1) {
        const admission = await limiter.admit(counted.env, tenantId, limits, 150, work.run);
        expect(admission.ok).toBe(true);
        if (admission.ok) limiter.settle(tenantId, admission.minute, 150, 20);
      }
      await work.done();
      expect(counted.calls).toEqual(["lease"]);
    });
  });

  it("tops a slice up in the background before it runs out, so requests do not wait for one", async () => {
    await withinOneMinute(async () => {
      const counted = countingLimiter();
      const limiter = new SliceLimiter();
      const limits = { ...none, requestsPerMinute: 80 };
      const tenantId = unique("tn_slices");
      const work = background();
      // the first slice is 10; at 2 left (under a quarter), the 9th request starts a top-up
      for (let i = 0; i < 9; i += 1) {
        expect((await limiter.admit(counted.env, tenantId, limits, 0, work.run)).ok).toBe(true);
      }
      await work.done();
      expect(counted.calls).toEqual(["lease", "lease"]);
      // 1 + the top-up's 8 (1/8 of the 70 left): 7 are spent without another call (2 left is
      // not under a quarter of the last grant, 8)
      for (let i = 0; i < 7; i += 1) {
        expect((await limiter.admit(counted.env, tenantId, limits, 0, () => {})).ok).toBe(true);
      }
      expect(counted.calls).toEqual(["lease", "lease"]);
    });
  });
});
