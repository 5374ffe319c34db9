// The `pressure` scenario (device-run.sh part `pressure`) at tiny shapes on CPU: the
// real backend twice, Unified Paging and the split pool, on waves of long requests each
// on its own adapter, in a pool that holds a wave's KV and adapters only shared.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ScenarioResult } from "../src/results.ts";
import { node, python, repoRoot } from "./repo.ts";

describe("npm run bench -- pressure --shape tiny", () => {
  it("preempts only in the split pool, and serves every request in both", {
    timeout: 150_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-pressure-"));
    const args = ["pressure", "--shape", "tiny", "--out", join(dir, "results")];
    const run = spawnSync(
      node,
      ["bench/src/main.ts", ...args, "--work-dir", join(dir, "work"), "--python", python],
      { cwd: repoRoot, encoding: "utf8", timeout: 140_000 },
    );
    expect(run.status, run.stderr).toBe(0);
    const file = join(dir, "results", "cpu", "pressure.json");
    const result = JSON.parse(readFileSync(file, "utf8")) as ScenarioResult;
    expect(result.gitSha).toMatch(/^[0-9a-f]{40}$/);
    const [unified, split] = result.runs;
    expect(result.runs.map((r) => r.variant)).toEqual(["slora", "no-unifymem"]);
    // 2 waves of 4 requests, 16 + 240 tokens each, each on its own rank-16 adapter, in
    // 4 x (512 KV + 224 adapter pages) + 56 = 3,000 pages
    expect(unified?.serverArgs).toEqual(
      expect.arrayContaining(["--num-pages", "3000", "--max-num-seqs", "4"]),
    );
    for (const r of [unified, split]) {
      expect(r?.error).toBeNull();
      expect(r?.metrics).toMatchObject({ requests: 8, ok: 8, aborted: 0, failed: 0 });
      expect(r?.metrics?.shortOutputs).toBe(0);
    }
    // Shared, a wave's KV and adapters fit: nothing is preempted, whatever the timing.
    expect(unified?.server?.preemptions).toBe(0);
    // Split in halves, the KV share holds 1,500 of the wave's 2,048 KV pages.
    expect(split?.serverArgs).toEqual(expect.arrayContaining(["--unified-paging", "false"]));
    expect(split?.server?.preemptions).toBeGreaterThan(0);
    expect(result.ratios["slora_vs_no-unifymem_min"]).toBeGreaterThan(0);
  });
});
