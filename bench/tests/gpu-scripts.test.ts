// bench/gpu's model and adapter generators at --smoke shapes on CPU, checked through
// the files they write (the PEFT baseline runs in smoke.test.ts, end to end).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { python, repoRoot } from "./repo.ts";
import { safetensorsHeader } from "./safetensors-header.ts";

function script(name: string, args: string[]) {
  const result = spawnSync(python, [join(repoRoot, "bench/gpu", name), ...args], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("make_model.py and make_adapters.py", () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-gpu-"));
  const model = join(dir, "tiny");
  const adapters = join(dir, "adapters");

  beforeAll(() => {
    const made = script("make_model.py", ["--smoke", "--out", model]);
    expect(made.status, made.stderr).toBe(0);
  });

  it("writes a bf16 Llama of the tiny shape with a tokenizer padded to its vocab", () => {
    const config = JSON.parse(readFileSync(join(model, "config.json"), "utf8"));
    expect(config).toMatchObject({ model_type: "llama", vocab_size: 1024, num_key_value_heads: 2 });
    const header = safetensorsHeader(join(model, "model.safetensors"));
    expect(header["model.layers.1.self_attn.k_proj.weight"]).toMatchObject({
      dtype: "BF16",
      shape: [32, 64],
    });
    expect(header["lm_head.weight"]?.shape).toEqual([1024, 64]);
    const tokenizer = JSON.parse(readFileSync(join(model, "tokenizer.json"), "utf8"));
    const ids = new Set<number>([
      ...(Object.values(tokenizer.model.vocab) as number[]),
      ...tokenizer.added_tokens.map((t: { id: number }) => t.id),
    ]);
    expect(ids.size).toBe(1024);
    expect(Math.max(...ids)).toBe(1023);
  });

  it("writes PEFT adapters of the asked ranks, hard-linking beyond --distinct", () => {
    const args = [
      "--model",
      model,
      "--out",
      adapters,
      "--count",
      "5",
      "--ranks",
      "4,8",
      "--distinct",
      "1",
    ];
    const made = script("make_adapters.py", args);
    expect(made.status, made.stderr).toBe(0);
    expect(JSON.parse(made.stdout)).toMatchObject({
      adapters: 5,
      distinct_files: 2,
      ranks: [4, 8],
    });
    const config = JSON.parse(
      readFileSync(join(adapters, "adapter-0003/adapter_config.json"), "utf8"),
    );
    expect(config).toMatchObject({
      peft_type: "LORA",
      r: 8,
      target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"],
    });
    const header = safetensorsHeader(join(adapters, "adapter-0003/adapter_model.safetensors"));
    expect(header["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"]?.shape).toEqual(
      [8, 64],
    );
    expect(header["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]?.shape).toEqual(
      [32, 8],
    );
    expect(Object.keys(header)).toHaveLength(2 * 4 * 2); // layers × targets × (A, B)
    const links = (name: string) =>
      statSync(join(adapters, name, "adapter_model.safetensors")).nlink;
    expect(links("adapter-0000")).toBe(3); // adapters 0, 2, 4 have rank 4: one file
    expect(links("adapter-0001")).toBe(2);
    const again = script("make_adapters.py", args);
    expect(JSON.parse(again.stdout)).toMatchObject({ kept: 5 });
  });

  it("refuses bad arguments by name", () => {
    const noModel = script("make_adapters.py", ["--out", adapters]);
    expect(noModel.status).toBe(1);
    expect(noModel.stderr).toMatch(/give --model DIR, --shape NAME or --smoke/);
    const noTokenizer = script("make_model.py", [
      "--smoke",
      "--out",
      join(dir, "m2"),
      "--tokenizer-from",
      dir,
    ]);
    expect(noTokenizer.status).toBe(1);
    expect(noTokenizer.stderr).toMatch(/no tokenizer.json in/);
    // nothing a later run would take for a complete model (config.json marks one)
    expect(existsSync(join(dir, "m2", "config.json"))).toBe(false);
    expect(readdirSync(join(dir, "m2")).filter((f) => f.endsWith(".safetensors"))).toEqual([]);
  });
});
