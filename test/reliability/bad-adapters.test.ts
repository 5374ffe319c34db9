// Adapter files that are broken or lie, and names that try to leave the adapter
// directory: each request for one is a 400 adapter_invalid (streamed or not), the
// process stays up, the good adapters still load, and no pool page is left behind.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Backend,
  fixturesDir,
  haveFixtures,
  startBackend,
} from "../backend/backend-process.ts";
import { expectIdle, expectOpenAIError, expectServes, post, readMetrics } from "./backend-probe.ts";

const fixtures = join(fixturesDir, "adapters");
const WEIGHTS = "adapter_model.safetensors";
const CONFIG = "adapter_config.json";

/** safetensors: u64 LE header length, JSON header, data. */
function splitSafetensors(bytes: Buffer) {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  return { header, data: bytes.subarray(8 + headerLength) };
}

function joinSafetensors(header: object, data: Buffer): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

/** The first F32 value of tensor `key` set to `value`. */
function withValue(bytes: Buffer, key: string, value: number): Buffer {
  const { header, data } = splitSafetensors(bytes);
  const copy = Buffer.from(data);
  copy.writeFloatLE(value, header[key]?.data_offsets[0] ?? 0);
  return joinSafetensors(header, copy);
}

const r8Weights = readFileSync(join(fixtures, "tiny-r8", WEIGHTS));
const r8Config = JSON.parse(readFileSync(join(fixtures, "tiny-r8", CONFIG), "utf8")) as Record<
  string,
  unknown
>;
const firstA = "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight";
const firstB = "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight";

/** Each broken adapter: the files written into its directory (null = file left out). */
const BROKEN: Record<string, { config?: string | null; weights?: Buffer | null; from?: string }> = {
  truncated: { weights: r8Weights.subarray(0, 1000) },
  "random-bytes": {
    weights: Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
  },
  "header-length-past-the-end": {
    weights: (() => {
      const copy = Buffer.from(r8Weights);
      copy.writeBigUInt64LE(10n ** 9n, 0);
      return copy;
    })(),
  },
  "offsets-past-the-end": {
    weights: (() => {
      const { header, data } = splitSafetensors(r8Weights);
      const entry = header[firstA];
      if (entry) entry.data_offsets = [0, data.length + 4096];
      return joinSafetensors(header, data);
    })(),
  },
  "header-not-json": {
    weights: (() => {
      const copy = Buffer.from(r8Weights);
      copy.write("{{{{", 8);
      return copy;
    })(),
  },
  "nan-weights": { weights: withValue(r8Weights, firstA, Number.NaN) },
  "inf-weights": { weights: withValue(r8Weights, firstB, Number.POSITIVE_INFINITY) },
  "rank-4-weights-under-rank-8-config": { from: "tiny-r4", config: JSON.stringify(r8Config) },
  "tensors-for-modules-the-config-leaves-out": {
    config: JSON.stringify({ ...r8Config, target_modules: ["q_proj"] }),
  },
  "targets-lm-head": { config: JSON.stringify({ ...r8Config, target_modules: ["lm_head"] }) },
  "rank-zero": { config: JSON.stringify({ ...r8Config, r: 0 }) },
  dora: { config: JSON.stringify({ ...r8Config, use_dora: true }) },
  "not-lora": { config: JSON.stringify({ ...r8Config, peft_type: "IA3" }) },
  "config-not-json": { config: "{not json" },
  "config-a-list": { config: "[]" },
  "weights-missing": { weights: null },
  "pickle-only": { weights: null, from: "tiny-r8" },
  // another base model's adapter (SmolLM2-135M: hidden 576): every shape is wrong here
  "wrong-base-model": { from: "smollm2-r8" },
  // above --max-lora-rank
  "rank-64-over-the-cap": { from: "tiny-r64" },
};

describe.skipIf(!haveFixtures)("broken and lying adapter files", () => {
  let backend: Backend;
  let dir: string;
  let goodAdapterPages = 0;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "lorafleet-bad-adapters-"));
    cpSync(join(fixtures, "tiny-r8"), join(dir, "tiny-r8"), { recursive: true });
    for (const [name, spec] of Object.entries(BROKEN)) {
      const target = join(dir, name);
      cpSync(join(fixtures, spec.from ?? "tiny-r8"), target, { recursive: true });
      if (spec.config !== undefined && spec.config !== null)
        writeFileSync(join(target, CONFIG), spec.config);
      if (spec.weights !== undefined) {
        rmSync(join(target, WEIGHTS));
        if (spec.weights !== null) writeFileSync(join(target, WEIGHTS), spec.weights);
      }
    }
    writeFileSync(join(dir, "pickle-only", "adapter_model.bin"), "not really a pickle");
    backend = await startBackend(["--adapter-dir", dir, "--max-lora-rank", "16"]);
    await expectServes(backend.url, "tiny-r8");
    goodAdapterPages =
      (await readMetrics(backend.url)).get('lorafleet_pool_pages{use="adapter"}') ?? -1;
    expect(goodAdapterPages).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await backend?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.each(Object.keys(BROKEN))(
    "%s: 400 adapter_invalid, streamed or not; still serving",
    async (name) => {
      for (const stream of [false, true]) {
        const response = await post(`${backend.url}/v1/chat/completions`, {
          model: name,
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 2,
          stream,
        });
        const error = await expectOpenAIError(response, 400, {
          code: "adapter_invalid",
          param: "model",
        });
        // the client learns what is wrong, not where this host keeps its files
        expect(error.message).not.toContain(dir);
      }
      await expectServes(backend.url);
      await expectServes(backend.url, "tiny-r8");
    },
  );

  it.each([
    "../tiny-r8",
    "tiny-r8/../tiny-r8",
    "./tiny-r8",
    "..",
    "%2e%2e%2ftiny-r8",
    `${"a".repeat(129)}`,
  ])("name %s: 404, nothing outside the adapter directory is read", async (model) => {
    const response = await post(`${backend.url}/v1/chat/completions`, {
      model,
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 2,
    });
    await expectOpenAIError(response, 404, { code: "model_not_found" });
  });

  it("leaves no pages, pins or requests behind: only the good adapter holds pool pages", async () => {
    await expectIdle(backend.url);
    const metrics = await readMetrics(backend.url);
    expect(metrics.get('lorafleet_pool_pages{use="adapter"}')).toBe(goodAdapterPages);
    expect(backend.process.exitCode).toBeNull();
  });
});
