import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { deviceSlug, gpuName } from "./environment.ts";
import {
  computeRatios,
  prefixRatios,
  quantizationOf,
  type ScenarioResult,
  updateSummary,
} from "./results.ts";
import { metricsWith, run } from "./testing/result-fixtures.ts";

describe("computeRatios", () => {
  it("divides each variant by base on the same point, or on the first when base ran once", () => {
    const runs = [
      run("base", "n=1", 1000),
      run("slora", "n=1", 900),
      run("slora", "n=2000", 850),
      run("bmm", "n=1", 450),
      run("bmm", "n=2000", 170),
    ];
    const ratios = computeRatios(runs, ["n=1", "n=2000"], null);
    expect(ratios["slora_vs_base@n=1"]).toBeCloseTo(0.9);
    expect(ratios["slora_vs_base@n=2000"]).toBeCloseTo(0.85);
    expect(ratios["slora_vs_bmm@n=1"]).toBeCloseTo(2);
    expect(ratios["slora_vs_bmm@n=2000"]).toBeCloseTo(5);
    expect(ratios.slora_vs_bmm_min).toBeCloseTo(2);
  });

  it("divides first-token latency p50 by base's on the same trace", () => {
    const base = run("base", "n=2000", 1000);
    const slora = run("slora", "n=2000", 900);
    if (slora.metrics) slora.metrics.firstTokenS = { ...slora.metrics.firstTokenS, p50: 0.25 };
    const ratios = computeRatios([base, slora], ["n=2000"], null);
    expect(ratios["slora_ttft_p50_vs_base@n=2000"]).toBeCloseTo(2.5);
    expect(ratios["slora_vs_base@n=2000"]).toBeCloseTo(0.9);
  });

  it("takes the minimum over the trace points it is given only", () => {
    const runs = [
      run("slora", "n=2000", 900),
      run("no-unifymem", "n=2000", 850),
      run("slora", "peft-batch", 2600),
      run("no-unifymem", "peft-batch", 2700),
    ];
    const ratios = computeRatios(runs, ["n=2000", "peft-batch"], null, ["n=2000"]);
    expect(ratios["slora_vs_no-unifymem@peft-batch"]).toBeCloseTo(2600 / 2700);
    expect(ratios["slora_vs_no-unifymem_min"]).toBeCloseTo(900 / 850);
  });

  it("leaves out ratios of failed runs and adds PEFT's", () => {
    const runs = [run("slora", "peft-batch", 3000), run("no-unifymem", "peft-batch", null)];
    const peft = {
      point: "peft-batch",
      result: { output_tokens_per_s: 25, requests: 10 },
      error: null,
    };
    const ratios = computeRatios(runs, ["peft-batch"], peft);
    expect(ratios).toEqual({ slora_vs_peft: 120 });
    const fewer = { ...peft, result: { output_tokens_per_s: 25, requests: 4 } };
    expect(computeRatios(runs, ["peft-batch"], fewer)).toEqual({});
  });
});

describe("prefixRatios", () => {
  it("compares cache-on with cache-off on each point, and its cached tokens with the ideal", () => {
    const on = run("cache-on", "saas", 3000);
    const off = run("cache-off", "saas", 1000);
    if (on.metrics === null || off.metrics === null) throw new Error("no metrics");
    on.metrics = {
      ...on.metrics,
      cachedPromptTokens: 450,
      firstTokenS: { ...on.metrics.firstTokenS, p50: 0.2 },
    };
    off.metrics = { ...off.metrics, firstTokenS: { ...off.metrics.firstTokenS, p50: 1.5 } };
    const trace = { requests: 10, promptTokens: 1000, idealCachedTokens: 500, idealShare: 0.5 };
    const ratios = prefixRatios([on, off], ["saas"], { saas: trace });
    expect(ratios).toEqual({
      "hit_vs_ideal@saas": 0.9,
      "cache-on_vs_cache-off@saas": 3,
      "cache_cost@saas": -2,
      "ttft_speedup@saas": expect.closeTo(7.5, 9),
    });
    // a failed run gives no ratio; a trace with no reuse no hit ratio
    const failed = run("cache-off", "zero-hit", null);
    const zero = { ...trace, idealCachedTokens: 0, idealShare: 0 };
    const onZero = { ...run("cache-on", "zero-hit", 990), metrics: metricsWith(990) };
    expect(prefixRatios([onZero, failed], ["zero-hit"], { "zero-hit": zero })).toEqual({});
  });
});

describe("summary.json", () => {
  it("merges this scenario's keys under the GPU name and keeps other producers' keys", () => {
    const dir = mkdtempSync(join(tmpdir(), "summary-"));
    const path = join(dir, "summary.json");
    writeFileSync(path, JSON.stringify({ "H100 80GB HBM3": { cold_load_ms: 1.7 } }));
    const result = {
      scenario: "ablations",
      device: "NVIDIA H100 80GB HBM3",
      gitSha: "abc",
      command: "node bench/src/main.ts ablations",
      runs: [{ serverArgs: ["--max-loras", "1024"] }],
      ratios: { slora_vs_peft: 140, slora_vs_bmm_min: 1.4, "slora_vs_no-unifymem_min": 1.2 },
    } as unknown as ScenarioResult;
    const keys = updateSummary(
      path,
      gpuName(result.device),
      result,
      "h100-80gb-hbm3/ablations.json",
    );
    expect(keys).toEqual(["vs_peft", "vs_bmm_min", "vs_no_unifymem_min"]);
    const entry = JSON.parse(readFileSync(path, "utf8"))["H100 80GB HBM3"];
    expect(entry).toMatchObject({
      cold_load_ms: 1.7,
      vs_peft: 140,
      vs_bmm_min: 1.4,
      vs_no_unifymem_min: 1.2,
      command: "node bench/src/main.ts ablations",
      git_sha: "abc",
      device: "NVIDIA H100 80GB HBM3",
    });
    expect(entry.sources.vs_peft).toBe("h100-80gb-hbm3/ablations.json");
    // every figure names the commit it was measured at, whatever wrote the entry last
    expect(entry.measured_at).toEqual({
      vs_peft: "abc",
      vs_bmm_min: "abc",
      vs_no_unifymem_min: "abc",
    });
    const pressure = {
      ...result,
      scenario: "pressure",
      gitSha: "def",
      ratios: { "slora_vs_no-unifymem_min": 1.3 },
    } as ScenarioResult;
    expect(updateSummary(path, "H100 80GB HBM3", pressure, "h100-80gb-hbm3/pressure.json")).toEqual(
      ["vs_no_unifymem_pressure"],
    );
    const after = JSON.parse(readFileSync(path, "utf8"))["H100 80GB HBM3"];
    expect(after).toMatchObject({ vs_no_unifymem_min: 1.2, vs_no_unifymem_pressure: 1.3 });
    expect(after.measured_at).toMatchObject({
      vs_no_unifymem_min: "abc",
      vs_no_unifymem_pressure: "def",
    });
  });

  it("takes the prefix scenarios' headline figures under the issue's keys", () => {
    const dir = mkdtempSync(join(tmpdir(), "summary-"));
    const path = join(dir, "summary.json");
    const result = (scenario: string, ratios: Record<string, number>) =>
      ({
        scenario,
        device: "NVIDIA H100 80GB HBM3",
        gitSha: "abc",
        command: "c",
        runs: [],
        ratios,
      }) as unknown as ScenarioResult;
    const write = (scenario: string, ratios: Record<string, number>) =>
      updateSummary(path, "H100 80GB HBM3", result(scenario, ratios), `x/${scenario}.json`);
    expect(
      write("prefix-mooncake", { "hit_vs_ideal@mooncake": 0.95, "ttft_speedup@mooncake": 1.8 }),
    ).toEqual(["prefix_mooncake_hit_vs_ideal", "prefix_mooncake_ttft_speedup"]);
    expect(
      write("prefix-saas", { "cache-on_vs_cache-off@saas": 3.2, "ttft_speedup@saas": 6 }),
    ).toEqual(["prefix_saas_throughput_vs_off", "prefix_saas_ttft_speedup"]);
    expect(write("prefix-zero-hit", { "cache_cost@zero-hit": 0.004 })).toEqual([
      "prefix_zero_hit_cost",
    ]);
    expect(JSON.parse(readFileSync(path, "utf8"))["H100 80GB HBM3"]).toMatchObject({
      prefix_mooncake_hit_vs_ideal: 0.95,
      prefix_mooncake_ttft_speedup: 1.8,
      prefix_saas_throughput_vs_off: 3.2,
      prefix_saas_ttft_speedup: 6,
      prefix_zero_hit_cost: 0.004,
    });
  });

  it("writes a run on an FP8 base under fp8_ keys, beside the bf16 ones", () => {
    const dir = mkdtempSync(join(tmpdir(), "summary-"));
    const path = join(dir, "summary.json");
    writeFileSync(path, JSON.stringify({ "H100 80GB HBM3": { lora2000_vs_base: 0.92 } }));
    const run = { serverArgs: ["--max-loras", "1024", "--quantization", "fp8"] };
    const result = {
      scenario: "ablations",
      device: "NVIDIA H100 80GB HBM3",
      gitSha: "abc",
      command: "node bench/src/main.ts ablations",
      runs: [run],
      ratios: { "slora_vs_base@n=2000": 0.95 },
    } as unknown as ScenarioResult;
    expect(quantizationOf(result)).toBe("fp8");
    const keys = updateSummary(path, "H100 80GB HBM3", result, "h100/ablations-fp8.json");
    expect(keys).toEqual(["fp8_lora2000_vs_base"]);
    const entry = JSON.parse(readFileSync(path, "utf8"))["H100 80GB HBM3"];
    expect(entry).toMatchObject({ lora2000_vs_base: 0.92, fp8_lora2000_vs_base: 0.95 });
    expect(entry.sources.fp8_lora2000_vs_base).toBe("h100/ablations-fp8.json");
    const bf16 = {
      ...result,
      runs: [{ serverArgs: ["--quantization", "fp8", "--quantization", "auto"] }],
    };
    expect(quantizationOf(bf16 as unknown as ScenarioResult)).toBe("auto");
  });

  it("names result folders and summary keys after the GPU", () => {
    expect(gpuName("NVIDIA H100 80GB HBM3")).toBe("H100 80GB HBM3");
    expect(deviceSlug("NVIDIA H100 80GB HBM3")).toBe("h100-80gb-hbm3");
    expect(deviceSlug("cpu")).toBe("cpu");
  });
});
