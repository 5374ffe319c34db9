// The gateway benchmark at its smoke size (bench/gateway/main.ts --smoke): the Worker in
// workerd against the stub backend and the stub directly, both tenants. A warm request
// costs no D1 query, KV read, Durable Object call or R2 operation on its path.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { repoRoot } from "./repo.ts";

type Latency = { p50: number; p90: number; p99: number; max: number };
type Point = {
  kind: string;
  x: number;
  stream: boolean;
  requests: number;
  errors: number;
  addedMs?: Latency;
  cpuMsPerRequest?: number;
};
type TenantResult = {
  counts: { requests: number; onPath: Record<string, number>; all: Record<string, number> };
  points: Point[];
};

it("measures what the gateway adds, with no central call on the warm path", {
  timeout: 180_000,
}, () => {
  const out = mkdtempSync(join(tmpdir(), "bench-gateway-smoke-"));
  try {
    const run = spawnSync(
      process.execPath,
      [join(repoRoot, "bench", "gateway", "main.ts"), "--smoke", "--out", out],
      {
        cwd: repoRoot,
        encoding: "utf8",
      },
    );
    expect(run.status, run.stderr).toBe(0);
    const report = JSON.parse(readFileSync(join(out, "gateway.json"), "utf8")) as {
      productMode: string;
      results: {
        direct: { points: Point[] };
        workerd: Record<"unlimited" | "limited", TenantResult>;
      };
    };
    expect(report.productMode).toBe("workerd");
    expect(report.results.direct.points.map((p) => [p.kind, p.x, p.stream])).toEqual([
      ["open", 100, false],
      ["closed", 1, false],
      ["closed", 16, false],
      ["open", 100, true],
    ]);
    for (const tenant of ["unlimited", "limited"] as const) {
      const { counts, points } = report.results.workerd[tenant];
      expect(counts.requests).toBe(20);
      // Nothing central is awaited but, at most once in these 20 requests, a new slice of the
      // limits when a UTC minute begins, a key's KV copy when its 10 s isolate copy ends, or
      // (started by a request, not awaited) a background refresh of the backend list (5 s)
      // and base models (10 s). The usage rows go after the response, several a message.
      const {
        do_calls: doCalls,
        kv_reads: kvReads,
        d1_queries: d1Queries,
        ...rest
      } = counts.onPath;
      expect(rest).toEqual({ d1_batches: 0, kv_writes: 0, r2_ops: 0, queue_messages: 0 });
      expect(counts.all.queue_messages).toBeGreaterThan(0);
      expect(counts.all.queue_messages).toBeLessThanOrEqual(1);
      expect(doCalls).toBeLessThanOrEqual(tenant === "limited" ? 1 / 20 : 0);
      expect(kvReads).toBeLessThanOrEqual(1 / 20);
      expect(d1Queries).toBeLessThanOrEqual(2 / 20);
      expect(points).toHaveLength(4);
      for (const point of points) {
        expect(point.errors).toBe(0);
        expect(Number.isFinite(point.addedMs?.p99)).toBe(true);
        expect(point.cpuMsPerRequest).toBeGreaterThan(0);
      }
    }
    expect(readFileSync(join(out, "gateway-added-latency.svg"), "utf8")).toContain("<svg");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
