// The `prefix-smoke` scenario end to end: the real backend (tiny model, CPU) with prefix
// caching on and off, each in its own backend, on toy SaaS chat sessions, the committed
// head of the Mooncake trace and a zero-hit trace.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ScenarioResult } from "../src/results.ts";
import { node, python, repoRoot } from "./repo.ts";

describe("npm run bench -- prefix-smoke", () => {
  it("runs each prefix workload with the cache on and off and compares them", {
    timeout: 240_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-prefix-smoke-"));
    const args = ["--out", join(dir, "results"), "--work-dir", join(dir, "work")];
    const run = spawnSync(
      node,
      ["bench/src/main.ts", "prefix-smoke", ...args, "--python", python],
      {
        cwd: repoRoot,
        encoding: "utf8",
        timeout: 230_000,
      },
    );
    expect(run.status, run.stderr.split("\n").slice(-40).join("\n")).toBe(0);
    const file = join(dir, "results", "cpu", "prefix-smoke.json");
    const result = JSON.parse(readFileSync(file, "utf8")) as ScenarioResult;
    expect(result.runs.map((r) => `${r.variant} ${r.point}`)).toEqual([
      "cache-on saas",
      "cache-on mooncake",
      "cache-on zero-hit",
      "cache-off saas",
      "cache-off mooncake",
      "cache-off zero-hit",
    ]);
    for (const r of result.runs) {
      expect(r.error).toBeNull();
      expect(r.metrics).toMatchObject({ ok: r.metrics?.requests, failed: 0, aborted: 0 });
      const cached = r.metrics?.cachedPromptTokens;
      // the server computed what the cache did not serve
      expect(r.server?.prefillTokens).toBeGreaterThanOrEqual(
        (r.metrics?.promptTokens ?? 0) - (cached ?? 0),
      );
      if (r.variant === "cache-off" || r.point === "zero-hit") expect(cached).toBe(0);
      else expect(cached).toBeGreaterThan(0);
    }
    // SaaS sessions reuse their system prompt and history; the toy Mooncake head little
    expect(result.traces.saas?.idealShare).toBeGreaterThan(0.4);
    expect(result.traces.mooncake?.idealShare).toBeGreaterThan(0);
    expect(result.traces["zero-hit"]?.idealCachedTokens).toBe(0);
    // A pool that holds every block finds what an unbounded cache would, but for a
    // follow-up that arrives before the request it continues was admitted.
    for (const point of ["saas", "mooncake"]) {
      expect(result.ratios[`hit_vs_ideal@${point}`]).toBeGreaterThan(0.9);
      expect(result.ratios[`hit_vs_ideal@${point}`]).toBeLessThanOrEqual(1);
    }
    for (const point of ["saas", "mooncake", "zero-hit"]) {
      expect(result.ratios[`cache-on_vs_cache-off@${point}`]).toBeGreaterThan(0);
      expect(result.ratios[`ttft_speedup@${point}`]).toBeGreaterThan(0);
    }
  });
});
