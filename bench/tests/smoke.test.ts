// The `smoke` scenario end to end, as CI runs it: the real backend server (and its
// Python executor) with the tiny model and generated adapters, an open-loop trace,
// the HF PEFT baseline, the result JSON and its figure.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { plotFiles } from "../src/plot.ts";
import { quantizationOf, type ScenarioResult } from "../src/results.ts";
import { node, python, repoRoot } from "./repo.ts";

describe("npm run bench -- smoke", () => {
  it("serves the trace through the real backend and writes the result", {
    timeout: 120_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-smoke-"));
    const run = runSmoke(dir, [], 110_000);
    const logs = readServerLogs(join(dir, "work", "logs"));
    expect(run.status, `${run.stderr}\n${logs}`).toBe(0);
    const file = join(dir, "results", "cpu", "smoke.json");
    expect(run.stdout.trim()).toBe(file);
    const result = JSON.parse(readFileSync(file, "utf8")) as ScenarioResult;
    expect(result).toMatchObject({ schema: 1, scenario: "smoke", device: "cpu", driver: null });
    expect(result.command).toMatch(/^node bench\/src\/main.ts smoke --out /);
    expect(result.gitSha).toMatch(/^[0-9a-f]{40}$/);
    expect(result.torch).toMatch(/^\d+\.\d+/);
    expect(result.runs.map((r) => r.variant)).toEqual(["base", "slora", "no-unifymem"]);
    for (const r of result.runs) {
      expect(r.error).toBeNull();
      const m = r.metrics;
      expect(m?.requests).toBeGreaterThan(0);
      expect(m).toMatchObject({ ok: m?.requests, aborted: 0, failed: 0, shortOutputs: 0 });
      expect(m?.outputTokensPerS).toBeGreaterThan(0);
      expect(m?.firstTokenS.p50).toBeGreaterThan(0);
      expect(m?.sloAttainment).toBeGreaterThan(0);
    }
    expect(result.ratios["slora_vs_base@n=4"]).toBeGreaterThan(0);
    // The server started with --unified-paging false served every request too.
    expect(result.runs[2]?.serverArgs).toEqual(
      expect.arrayContaining(["--unified-paging", "false"]),
    );
    expect(result.ratios["slora_vs_no-unifymem@n=4"]).toBeGreaterThan(0);
    expect(result.peftBaseline?.error).toBeNull();
    expect(result.peftBaseline?.result).toMatchObject({ baseline: "peft", requests: 4 });
    const figures = plotFiles([file]);
    expect(figures).toEqual([join(dir, "results", "cpu", "smoke.svg")]);
    expect(existsSync(figures[0] as string)).toBe(true);
  });
});

describe("device-run.sh fp8ablations, at smoke size", () => {
  it("serves the trace from an FP8 base (--quantization fp8), base and adapters", {
    timeout: 180_000,
  }, () => {
    const dir = mkdtempSync(join(tmpdir(), "bench-smoke-fp8-"));
    const fp8 = ["--variants", "base,slora", "--no-peft", "--duration", "1"];
    const run = runSmoke(dir, [...fp8, "--server-args=--quantization fp8"], 170_000);
    const logs = readServerLogs(join(dir, "work", "logs"), "smoke.base.server.log");
    expect(run.status, `${run.stderr}\n${logs}`).toBe(0);
    const result = JSON.parse(
      readFileSync(join(dir, "results", "cpu", "smoke.json"), "utf8"),
    ) as ScenarioResult;
    expect(result.runs.map((r) => r.variant)).toEqual(["base", "slora"]);
    for (const r of result.runs) {
      expect(r.serverArgs.slice(-2)).toEqual(["--quantization", "fp8"]);
      expect(r.metrics).toMatchObject({ ok: r.metrics?.requests, failed: 0, shortOutputs: 0 });
    }
    expect(quantizationOf(result)).toBe("fp8");
    expect(result.ratios["slora_vs_base@n=4"]).toBeGreaterThan(0);
    // the executor said it serves FP8 projections
    const serverLog = readFileSync(join(dir, "work", "logs", "smoke.slora.server.log"), "utf8");
    expect(serverLog).toContain('"quantization":"fp8"');
  });
});

function runSmoke(dir: string, args: string[], timeout: number) {
  const out = ["--out", join(dir, "results"), "--work-dir", join(dir, "work")];
  return spawnSync(node, ["bench/src/main.ts", "smoke", ...args, ...out, "--python", python], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout,
  });
}

function readServerLogs(logDir: string, name = "smoke.base+slora.server.log"): string {
  const path = join(logDir, name);
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").slice(-30).join("\n") : "";
}
