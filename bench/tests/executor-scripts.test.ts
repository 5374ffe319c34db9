// The GPU scripts that time the executor's own paths (stage_bench.py, cold_load.py,
// roofline.py, fp8_decode.py, step_profile.py, grammar_bench.py) at --smoke shapes on CPU: they run end to end and write the JSON the GPU
// run will, with the run's provenance.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { python, repoRoot } from "./repo.ts";

const dir = mkdtempSync(join(tmpdir(), "bench-executor-scripts-"));

function runScript(name: string, timeout = 60_000): Record<string, unknown> {
  const out = join(dir, `${name}.json`);
  const result = spawnSync(python, [join("bench/gpu", name), "--smoke", "--out", out], {
    cwd: repoRoot,
    encoding: "utf8",
    timeout,
  });
  expect(result.status, result.stderr).toBe(0);
  const json = JSON.parse(readFileSync(out, "utf8")) as Record<string, unknown>;
  expect(json.git_sha).toMatch(/^[0-9a-f]{40}$/);
  expect(json.command).toBe(`python bench/gpu/${name} --smoke --out ${out}`);
  expect(json.torch).toMatch(/^\d+\.\d+/);
  expect(json.device).toMatch(/^cpu/);
  return json;
}

describe("executor timing scripts (--smoke, CPU)", () => {
  it("stage_bench.py stages distinct files warm and cold, one and several at once, as parse_adapter packs", () => {
    const json = runScript("stage_bench.py");
    const runs = json.runs as {
      page_cache: string;
      concurrent: number;
      identical_to_parse_adapter: boolean;
      ms_per_stage: { median: number; p90: number; max: number };
    }[];
    expect(runs.map((r) => [r.page_cache, r.concurrent])).toEqual([
      ["warm", 1],
      ["warm", 2],
      ["cold", 1],
      ["cold", 2],
    ]);
    for (const r of runs) {
      expect(r.identical_to_parse_adapter).toBe(true);
      expect(r.ms_per_stage.median).toBeGreaterThan(0);
      expect(r.ms_per_stage.max).toBeGreaterThanOrEqual(r.ms_per_stage.median);
    }
    expect(json.distinct_files).toBe(4);
    expect(json.adapter_stage_ms_r32).toBe(runs[2]?.ms_per_stage.median);
  });

  it("grammar_bench.py runs a constrained batch and replays it free, answers parsing", {
    timeout: 180_000,
  }, () => {
    const json = runScript("grammar_bench.py", 150_000);
    expect(json.batch).toBe(4);
    expect(json.structured_vs_free_b64).toBeGreaterThan(0);
    expect(json.grammar_mask_us_p99).toBeGreaterThanOrEqual(json.grammar_mask_us_p50 as number);
    expect(json.grammar_compiles).toBeGreaterThan(0);
    expect(json.grammar_compile_ms_p50).toBeGreaterThan(0);
    expect(json.grammar_failures).toBe(0);
    const answers = json.answers as { finished: number; parsed_json: number };
    expect(answers.parsed_json).toBe(answers.finished);
  });

  it("cold_load.py loads through the executor, with a decode loop beside it", () => {
    const json = runScript("cold_load.py");
    expect(json.cold_load_ms).toBe(json.load_ms);
    expect(json.load_ms).toBeGreaterThan(0);
    expect(json.stage_plus_load_ms).toBeGreaterThan(0);
    expect(json.adapter_pages).toBeGreaterThan(0);
    const decode = json.decode as Record<string, number>;
    expect(decode.step_ms_alone).toBeGreaterThan(0);
    expect(decode.step_ms_with_loads).toBeGreaterThan(0);
  });

  it("roofline.py times base decode against weight + KV bytes over the bandwidth", () => {
    const json = runScript("roofline.py");
    const runs = json.runs as {
      batch: number;
      weight_bytes: number;
      kv_bytes: number;
      total_bytes: number;
      eager: { roofline_fraction: number };
    }[];
    expect(runs.map((r) => r.batch)).toEqual([2, 4]);
    for (const r of runs) {
      expect(r.total_bytes).toBe(r.weight_bytes + r.kv_bytes);
      // tiny shape: 2 layers × batch × (8 + 1) tokens × K and V × W=32 × fp32
      expect(r.kv_bytes).toBe(2 * 2 * r.batch * 9 * 32 * 4);
      expect(r.eager.roofline_fraction).toBeGreaterThan(0);
    }
    expect(json.base_roofline_fraction).toBe(
      Math.min(...runs.map((r) => r.eager.roofline_fraction)),
    );
  });

  it("fp8_decode.py times FP8 and dense decode side by side, with their bytes", () => {
    interface Timed {
      weight_bytes: number;
      kv_bytes: number;
      vs_bf16?: number;
      eager: { tokens_per_s: number };
      lora?: { vs_base: number };
    }
    const json = runScript("fp8_decode.py") as {
      weight_bytes: { bf16: number; fp8: number };
      page_bytes: number;
      runs: { batch: number; bf16: Timed; fp8: Timed }[];
      fp8_decode_vs_bf16: number;
      fp8_roofline_fraction: number;
      fp8_pool_pages_gained: number;
    };
    // tiny shape, fp32 on CPU: 2 layers of projections at 4 bytes a weight against 1 and
    // a float32 scale per output channel (q 64 + k 32 + v 32, o 64, gate_up 320, down 64)
    const perLayer = 64 * 128 + 64 * 64 + 64 * 320 + 160 * 64;
    const saved = json.weight_bytes.bf16 - json.weight_bytes.fp8;
    expect(saved).toBe(2 * (3 * perLayer - 4 * (128 + 64 + 320 + 64)));
    expect(json.fp8_pool_pages_gained).toBe(Math.floor(saved / json.page_bytes));
    expect(json.runs.map((r) => r.batch)).toEqual([2, 4]);
    for (const { bf16, fp8 } of json.runs) {
      expect(bf16.weight_bytes - fp8.weight_bytes).toBe(saved);
      expect(fp8.kv_bytes).toBe(bf16.kv_bytes);
      expect(fp8.vs_bf16).toBeCloseTo(fp8.eager.tokens_per_s / bf16.eager.tokens_per_s, 9);
      expect(fp8.lora?.vs_base).toBeGreaterThan(0);
    }
    expect(json.fp8_decode_vs_bf16).toBe(Math.min(...json.runs.map((r) => r.fp8.vs_bf16 ?? 0)));
    expect(json.fp8_roofline_fraction).toBeGreaterThan(0);
  });

  it("step_profile.py times decode, prefill and mixed steps, base and with adapters", () => {
    const json = runScript("step_profile.py");
    const runs = json.runs as Record<string, Record<string, { step_ms: number; host_ms: number }>>;
    expect(Object.keys(runs)).toEqual(["decode", "prefill", "mixed"]);
    for (const kind of Object.values(runs)) {
      expect(Object.keys(kind)).toEqual(["base", "lora"]);
      for (const timed of Object.values(kind)) {
        // the host's share of a step is part of it (on CPU, all of it)
        expect(timed.host_ms).toBeGreaterThan(0);
        expect(timed.host_ms).toBeLessThanOrEqual(timed.step_ms);
      }
    }
    expect(json.adapters_in_batch).toBeGreaterThan(1);
  });
});
