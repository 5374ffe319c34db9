import {
  createExecutionContext,
  createScheduledController,
  env,
  SELF,
  waitOnExecutionContext,
} from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index.ts";
import { type RoutableBackend, rankBackends } from "../src/routing/rendezvous.ts";
import {
  admin,
  defined,
  registerBaseModel,
  registerPeerBackend,
  setPeerMode,
  tinyModel,
} from "./helpers/gateway-client.ts";

const fleet = (n: number, load = 0): RoutableBackend[] =>
  Array.from({ length: n }, (_, i) => ({ id: `gpu-${i}`, capacity: 32, load }));
const keys = Array.from({ length: 2000 }, (_, i) => `ad_${i}`);

describe("rendezvous hashing with bounded load", () => {
  it("spreads keys evenly and gives each key a stable first choice", () => {
    const backends = fleet(4);
    const counts = new Map<string, number>();
    for (const key of keys) {
      const first = defined(rankBackends(key, backends)[0]).id;
      expect(rankBackends(key, [...backends].reverse())[0]?.id).toBe(first);
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    for (const count of counts.values()) expect(count).toBeGreaterThan(400); // 500 each when even
  });

  it("moves only the keys of a removed backend", () => {
    const backends = fleet(5);
    const without = backends.filter((b) => b.id !== "gpu-2");
    for (const key of keys) {
      const before = rankBackends(key, backends)[0]?.id;
      const after = rankBackends(key, without)[0]?.id;
      if (before !== "gpu-2") expect(after).toBe(before);
    }
  });

  it("weights by capacity", () => {
    const backends = [
      { id: "big", capacity: 96, load: 0 },
      { id: "small", capacity: 32, load: 0 },
    ];
    const big = keys.filter((k) => rankBackends(k, backends)[0]?.id === "big").length;
    expect(big / keys.length).toBeGreaterThan(0.7);
    expect(big / keys.length).toBeLessThan(0.8);
  });

  it("passes over a backend loaded beyond (1 + epsilon) times its share, keeping it for failover", () => {
    const backends = fleet(3);
    const key = "ad_hot";
    const preferred = defined(rankBackends(key, backends)[0]);
    const loaded = backends.map((b) =>
      b.id === preferred.id ? { ...b, load: 40 } : { ...b, load: 2 },
    );
    const ranked = rankBackends(key, loaded);
    expect(ranked[0]?.id).not.toBe(preferred.id);
    expect(ranked.at(-1)?.id).toBe(preferred.id);
    const light = backends.map((b) =>
      b.id === preferred.id ? { ...b, load: 3 } : { ...b, load: 2 },
    );
    expect(rankBackends(key, light)[0]?.id).toBe(preferred.id);
  });
});

describe("cron health check", () => {
  it("marks failing backends unhealthy with the reason, and records the load they report", async () => {
    const model = await registerBaseModel(tinyModel());
    const good = await registerPeerBackend(model.name);
    const bad = await registerPeerBackend(model.name);
    await setPeerMode(good, { mode: "ok", load: 7 });
    await setPeerMode(bad, { mode: "error" });
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    const rows = await admin<{
      data: { id: string; healthy: number; load: number; last_error: string | null }[];
    }>("GET", "/backends");
    expect(rows.data.find((b) => b.id === good)).toMatchObject({
      healthy: 1,
      load: 7,
      last_error: null,
    });
    expect(rows.data.find((b) => b.id === bad)).toMatchObject({
      healthy: 0,
      last_error: "HTTP 503",
    });

    await setPeerMode(bad, { mode: "ok" });
    const again = createExecutionContext();
    await worker.scheduled(createScheduledController({ cron: "* * * * *" }), env, again);
    await waitOnExecutionContext(again);
    const after = await admin<{ data: { id: string; healthy: number }[] }>("GET", "/backends");
    expect(after.data.find((b) => b.id === bad)?.healthy).toBe(1);
    expect((await SELF.fetch("https://gateway.test/healthz")).status).toBe(200);
  });
});
