// Adapter files fuzzed against the executor's staging, and against registration's check
// of the same files (the shared rules in TypeScript): random changes to a real adapter's
// adapter_config.json (fields, bytes) and adapter_model.safetensors (header entries:
// dtypes, shapes, offsets, names; header and data bytes; the length prefix; the file cut
// or grown). The real executor, over its socket, must answer every stage (never crash,
// never hang, never `internal`), and both sides must give the same verdict: both serve it
// (rank, scale, targets alike) or both refuse it with the same message.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterRuleError, LORA_MODULES } from "@lorafleet/api";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ExecutorClient } from "../executor/client.ts";
import { ExecutorRequestError } from "../executor/errors.ts";
import {
  clientsShutAfterEach,
  HAVE_TINY,
  TINY_ADAPTER,
  tinyConfig,
} from "../executor/test-fixtures.ts";
import type { ModelInfo } from "../protocol/messages.ts";
import { adapterBaseOf, checkAdapterDirectory } from "./directory-check.ts";

/** Cases run in CI (stated in test/reliability/README.md's figures). */
const RUNS = 1500;
const MAX_RANK = 16;

const CONFIG = readFileSync(join(TINY_ADAPTER, "..", "tiny-r4", "adapter_config.json"), "utf8");
const WEIGHTS = readFileSync(join(TINY_ADAPTER, "..", "tiny-r4", "adapter_model.safetensors"));
const HEADER_LENGTH = Number(WEIGHTS.readBigUInt64LE(0));
const HEADER = JSON.parse(WEIGHTS.subarray(8, 8 + HEADER_LENGTH).toString()) as Record<
  string,
  Record<string, unknown>
>;
const DATA = WEIGHTS.subarray(8 + HEADER_LENGTH);
const NAMES = Object.keys(HEADER).filter((n) => n !== "__metadata__");

const edgy = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(
    0,
    -1,
    1,
    4,
    8,
    16,
    17,
    1e308,
    1e30,
    5e-324,
    0.5,
    2048,
    "",
    "none",
    "all",
    "LORA",
    "all-linear",
    true,
    false,
    null,
    [],
    {},
  ),
  fc.constantFrom(
    ["q_proj"],
    ["q_proj", "v_proj"],
    ["lm_head"],
    [...LORA_MODULES].map((m) => `${m}_proj`),
    ".*q_proj",
  ),
);
const CONFIG_FIELDS = [
  "peft_type",
  "r",
  "lora_alpha",
  "use_rslora",
  "target_modules",
  "bias",
  "use_dora",
  "modules_to_save",
  "rank_pattern",
  "alpha_pattern",
  "layers_to_transform",
  "fan_in_fan_out",
  "exclude_modules",
  "extra_field",
];

type Files = { config: Uint8Array; weights: Uint8Array };

const withHeader = (header: object, data: Uint8Array): Uint8Array => {
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
};
const flipped = (bytes: Uint8Array, edits: [number, number][], from = 0, to = bytes.length) => {
  const copy = Uint8Array.from(bytes);
  for (const [at, value] of edits) copy[from + (at % Math.max(1, to - from))] = value;
  return copy;
};
const edits = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
  minLength: 1,
  maxLength: 6,
});

/** A real adapter (tiny-r4 on q and v) with one kind of damage done to it. */
const damaged: fc.Arbitrary<Files> = fc.oneof(
  fc
    .dictionary(fc.constantFrom(...CONFIG_FIELDS), edgy, { minKeys: 1, maxKeys: 3 })
    .map((fields) => ({
      config: Buffer.from(JSON.stringify({ ...JSON.parse(CONFIG), ...fields })),
      weights: WEIGHTS,
    })),
  fc
    .tuple(
      fc.constantFrom('"r": 4', '"lora_alpha": 8', '"use_rslora": false'),
      fc.constantFrom("4.0", "8e0", "NaN", "Infinity", "-0", "1e400", "[4]", "4,"),
    )
    .map(([field, value]) => ({
      config: Buffer.from(CONFIG.replace(field, `${field.split(":")[0]}: ${value}`)),
      weights: WEIGHTS,
    })),
  edits.map((e) => ({ config: flipped(Buffer.from(CONFIG), e), weights: WEIGHTS })),
  fc
    .tuple(
      fc.constantFrom(...NAMES),
      fc.constantFrom("dtype", "shape", "data_offsets", "name", "drop"),
      edgy,
      fc.string(),
    )
    .map(([name, what, value, rename]) => {
      const header = structuredClone(HEADER);
      const entry = header[name] as Record<string, unknown>;
      if (what === "drop") delete header[name];
      else if (what === "name") {
        delete header[name];
        header[rename.length > 0 ? rename : `${name}x`] = entry;
      } else entry[what] = value;
      return { config: Buffer.from(CONFIG), weights: withHeader(header, DATA) };
    }),
  fc
    .tuple(fc.constantFrom(...NAMES), fc.constantFrom("F16", "BF16", "F64", "I8", "U8", "F8_E4M3"))
    .map(([name, dtype]) => {
      // a dtype change that keeps the bytes: the shape says how many elements they are
      const header = structuredClone(HEADER);
      (header[name] as Record<string, unknown>).dtype = dtype;
      return { config: Buffer.from(CONFIG), weights: withHeader(header, DATA) };
    }),
  edits.map((e) => ({
    config: Buffer.from(CONFIG),
    weights: flipped(WEIGHTS, e, 8, 8 + HEADER_LENGTH),
  })),
  edits.map((e) => ({
    config: Buffer.from(CONFIG),
    weights: flipped(WEIGHTS, e, 8 + HEADER_LENGTH),
  })),
  edits.map((e) => ({ config: Buffer.from(CONFIG), weights: flipped(WEIGHTS, e, 0, 8) })),
  fc.integer({ min: 0, max: WEIGHTS.length + 64 }).map((size) => ({
    config: Buffer.from(CONFIG),
    weights:
      size <= WEIGHTS.length
        ? WEIGHTS.subarray(0, size)
        : Buffer.concat([WEIGHTS, Buffer.alloc(size - WEIGHTS.length, 7)]),
  })),
);

type Verdict = { served: { rank: number; scale: number; targets: string[] } } | { refused: string };

const { client } = clientsShutAfterEach();

describe.skipIf(!HAVE_TINY)("adapter files fuzzed against staging and registration alike", () => {
  const dir = mkdtempSync(join(tmpdir(), "lorafleet-adapter-fuzz-"));
  let executor: ExecutorClient;
  let model: ModelInfo;

  beforeAll(async () => {
    executor = client();
    model = await executor.init({ ...tinyConfig(), maxLoraRank: MAX_RANK });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`judges ${RUNS} damaged adapters as registration does, and answers every one`, async () => {
    const base = adapterBaseOf(model, MAX_RANK);
    let adapterId = 0;
    const verdicts = { served: 0, refused: 0 };
    await fc.assert(
      fc.asyncProperty(damaged, async ({ config, weights }) => {
        writeFileSync(join(dir, "adapter_config.json"), config);
        writeFileSync(join(dir, "adapter_model.safetensors"), weights);
        const registration: Verdict = await checkAdapterDirectory(dir, base).then(
          (c) => ({ served: { rank: c.rank, scale: c.scale, targets: c.targets } }),
          (error: unknown) => {
            if (!(error instanceof AdapterRuleError)) throw error;
            return { refused: error.message };
          },
        );
        const id = ++adapterId;
        const staging: Verdict = await executor.stageAdapter(id, dir).then(
          (s) => ({ served: { rank: s.rank, scale: s.scale, targets: s.targets } }),
          (error: unknown) => {
            expect(error).toBeInstanceOf(ExecutorRequestError);
            expect((error as ExecutorRequestError).code).toBe("adapter_invalid");
            return { refused: (error as ExecutorRequestError).reason };
          },
        );
        expect(staging).toEqual(registration);
        if ("served" in staging) {
          verdicts.served++;
          await executor.dropAdapter(id, "host");
        } else verdicts.refused++;
      }),
      { numRuns: RUNS },
    );
    // both kinds of verdict were reached (each run: many hundreds of each)
    expect(verdicts.served).toBeGreaterThan(RUNS / 20);
    expect(verdicts.refused).toBeGreaterThan(RUNS / 2);
    expect(executor.state).toBe("ready");
  });
});
