// A client's x-request-id is a label, never a key: usage rows and limiter reservations are
// kept by an id the gateway makes, so a reused id (by one tenant, or by another tenant,
// before or after) never merges, drops or steals a row or a stream slot (issue #20, 3/4).
import { env } from "cloudflare:test";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import {
  type BaseModelSpec,
  call,
  chat,
  createTenant,
  defined,
  eventually,
  peerServedModel,
  type Tenant,
  usageRows,
  waitForUsageRows,
} from "./helpers/gateway-client.ts";

const limiterOf = (tenantId: string) => env.LIMITER.get(env.LIMITER.idFromName(tenantId));

/** The rows GET /v1/usage/requests/:id answers `tenant`. */
async function lookUp(tenant: Tenant, requestId: string) {
  const res = await call(tenant.key, "GET", `/v1/usage/requests/${requestId}`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: { id: string; request_id: string; model: string }[] }).data;
}

describe("x-request-id is a label", () => {
  let ok: BaseModelSpec;
  let slow: BaseModelSpec;
  beforeAll(async () => {
    ({ model: ok } = await peerServedModel({ mode: "ok" }));
    // Each stream lives >= 600 ms (3 tokens, 200 ms apart), so all admissions overlap.
    ({ model: slow } = await peerServedModel({ mode: "slow", delayMs: 200 }));
  });

  it("gives each of three requests sending one id its own row, all found by that id", async () => {
    const b = await createTenant();
    for (let i = 0; i < 3; i += 1) {
      const res = await chat(b.key, ok.name, {}, { "x-request-id": "shared-id" });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-request-id")).toBe("shared-id");
      await res.text();
    }
    const rows = await waitForUsageRows(b.id, 3);
    expect(rows.map((r) => r.request_id)).toEqual(["shared-id", "shared-id", "shared-id"]);
    expect(new Set(rows.map((r) => r.id)).size).toBe(3);
    for (const row of rows) expect(row.id).toMatch(/^req_[A-Za-z0-9]{16}$/);
    expect((await lookUp(b, "shared-id")).map((r) => r.id).sort()).toEqual(
      rows.map((r) => r.id).sort(),
    );
  });

  it("records another tenant's id, sent before or after, for both tenants, each seeing only its own", async () => {
    const a = await createTenant();
    const b = await createTenant();
    // a pre-claims the id b's client will send, then sends it again after b did
    for (const tenant of [a, b, a]) {
      const res = await chat(tenant.key, ok.name, {}, { "x-request-id": "their-id" });
      expect(res.status).toBe(200);
      await res.text();
    }
    await eventually(async () => {
      expect(await usageRows(a.id)).toHaveLength(2);
      expect(await usageRows(b.id)).toHaveLength(1);
    });
    expect(await lookUp(a, "their-id")).toHaveLength(2);
    expect(await lookUp(b, "their-id")).toHaveLength(1);
    expect(await lookUp(b, "nobody-sent-this")).toEqual([]);
  });

  it("admits exactly concurrent_streams of 6 streams sharing one id, and settles each", async () => {
    const tenant = await createTenant({ concurrent_streams: 2 });
    const responses = await Promise.all(
      Array.from({ length: 6 }, () =>
        chat(tenant.key, slow.name, { stream: true, max_tokens: 3 }, { "x-request-id": "same" }),
      ),
    );
    const statuses = responses.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429]);
    expect(Object.keys((await limiterOf(tenant.id).snapshot()).open)).toHaveLength(2);
    await Promise.all(responses.map((r) => r.text()));
    // every admitted stream settles its own reservation: none left open, none charged twice
    await eventually(async () => expect((await limiterOf(tenant.id).snapshot()).open).toEqual({}));
    const rows = await waitForUsageRows(tenant.id, 6);
    expect(rows.filter((r) => r.status === 200 && r.outcome === "ok")).toHaveLength(2);
    expect(rows.filter((r) => r.outcome === "rate_limited")).toHaveLength(4);
  });

  it("keeps rows and stream slots per request over random interleavings of tenants, ids and outcomes", async () => {
    const cap = 2;
    const request = fc.record({
      tenant: fc.nat({ max: 2 }),
      // few ids, so most requests collide with another, in their tenant or across
      id: fc.option(fc.constantFrom("a", "b", "c"), { nil: undefined }),
      kind: fc.constantFrom("answer", "stream", "stream_left", "unknown_model"),
      delayMs: fc.nat({ max: 30 }),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(request, { minLength: 1, maxLength: 14 }), async (requests) => {
        const tenants = await Promise.all(
          [0, 1, 2].map(() => createTenant({ concurrent_streams: cap })),
        );
        const results = await Promise.all(
          requests.map(async (r) => {
            await new Promise((resolve) => setTimeout(resolve, r.delayMs));
            const tenant = defined(tenants[r.tenant]);
            const streamed = r.kind === "stream" || r.kind === "stream_left";
            const model = r.kind === "unknown_model" ? "no-such-model" : streamed ? slow : ok;
            const res = await chat(
              tenant.key,
              typeof model === "string" ? model : model.name,
              streamed ? { stream: true, max_tokens: 3 } : {},
              r.id === undefined ? {} : { "x-request-id": r.id },
            );
            return { ...r, res, streamed };
          }),
        );
        // Every stream is admitted before any could end (each lives >= 600 ms).
        for (const [t, tenant] of tenants.entries()) {
          const streams = results.filter((r) => r.tenant === t && r.streamed);
          const admitted = streams.filter((r) => r.res.status === 200).length;
          expect(admitted).toBe(Math.min(cap, streams.length));
          expect(Object.keys((await limiterOf(tenant.id).snapshot()).open)).toHaveLength(admitted);
        }
        await Promise.all(
          results.map(async (r) => {
            if (r.kind === "stream_left" && r.res.status === 200) {
              const reader = defined(r.res.body).getReader();
              await reader.read();
              await reader.cancel();
            } else await r.res.text();
          }),
        );
        for (const [t, tenant] of tenants.entries()) {
          // one row per request that named a model it has, whatever became of it
          const made = results.filter((r) => r.tenant === t && r.kind !== "unknown_model");
          const rows = await waitForUsageRows(tenant.id, made.length);
          expect(new Set(rows.map((row) => row.id)).size).toBe(made.length);
          const labels = (ids: (string | undefined)[]) =>
            ids.map((id) => (id === undefined ? "(gateway's)" : id)).sort();
          expect(
            labels(
              rows.map((row) => (/^[a-c]$/.test(row.request_id) ? row.request_id : undefined)),
            ),
          ).toEqual(labels(made.map((r) => r.id)));
          await eventually(async () =>
            expect((await limiterOf(tenant.id).snapshot()).open).toEqual({}),
          );
        }
      }),
      { numRuns: 12 },
    );
  }, 120_000);
});
