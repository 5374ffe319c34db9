// fast-check generators of valid messages, for the property and cross-language tests.

import fc from "fast-check";
import type { Message } from "./protocol.ts";
import { ERROR_CODES, GRAMMAR_KINDS, MODULE_NAMES } from "./schema.ts";

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const count = fc.maxSafeNat();
// -0 prints as "0" in JSON: it comes back as 0, which is the same number on the wire.
const finite = fc.double({ noNaN: true, noDefaultInfinity: true }).map((x) => (x === 0 ? 0 : x));
const text = fc.string({ unit: "binary", maxLength: 40 });

const u32s = (n: number) => fc.uint32Array({ minLength: n, maxLength: n });
const i32s = (n: number) => fc.int32Array({ minLength: n, maxLength: n });
const f32s = (n: number) => fc.float32Array({ minLength: n, maxLength: n });

const stepPlan = fc
  .tuple(fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 6 }), fc.nat(6))
  .chain(([newTokens, p]) => {
    const s = newTokens.length;
    const t = newTokens.reduce((a, b) => a + b, 0);
    return fc.record({
      stepId: u32,
      freeSeqIds: fc.uint32Array({ maxLength: 4 }),
      seqIds: u32s(s),
      flags: fc.uint8Array({ minLength: s, maxLength: s }),
      numNewTokens: fc.constant(Int32Array.from(newTokens)),
      numCached: i32s(s),
      numPrompt: i32s(s),
      adapterIds: i32s(s),
      temperature: f32s(s),
      topP: f32s(s),
      topK: i32s(s),
      minP: f32s(s),
      presencePenalty: f32s(s),
      frequencyPenalty: f32s(s),
      repetitionPenalty: f32s(s),
      seed: fc.bigInt64Array({ minLength: s, maxLength: s }),
      logprobs: i32s(s),
      tokenIds: i32s(t),
      kvPages: i32s(2 * t),
      prefixTokenIds: i32s(p),
      prefixKvPages: i32s(2 * p),
      grammarIds: i32s(s),
    });
  });

const stepResult = fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 5 }).chain((topCounts) => {
  const n = topCounts.length;
  const k = topCounts.reduce((a, b) => a + b, 0);
  return fc.record({
    stepId: u32,
    seqIds: u32s(n),
    tokens: i32s(n),
    logprobs: f32s(n),
    topCounts: fc.constant(Int32Array.from(topCounts)),
    topIds: i32s(k),
    topLogprobs: f32s(k),
    grammarErrors: fc.uint8Array({ minLength: n, maxLength: n }),
    forwardMs: finite,
    sampleMs: finite,
  });
});

const pair = fc.tuple(count, count);

export const anyMessage: fc.Arbitrary<Message> = fc.oneof(
  fc.record({
    type: fc.constant("init" as const),
    body: fc.record({
      modelPath: text,
      dtype: fc.constantFrom("auto", "bfloat16", "float16", "float32" as const),
      device: fc.constantFrom("auto", "cpu", "cuda" as const),
      numPages: count,
      gpuMemoryUtilization: finite,
      maxLoraRank: count,
      maxNumSeqs: count,
      maxNumBatchedTokens: count,
      hostCacheBytes: count,
      loraBackend: fc.constantFrom("triton", "torch" as const),
      cudaGraphs: fc.boolean(),
      quantization: fc.constantFrom("auto", "fp8" as const),
    }),
  }),
  fc.record({
    type: fc.constant("ready" as const),
    body: fc.record({
      numPages: count,
      pageWidth: count,
      numLayers: count,
      hiddenSize: count,
      intermediateSize: count,
      numHeads: count,
      numKvHeads: count,
      headDim: count,
      vocabSize: count,
      maxPosition: count,
      hostCacheBytes: count,
      maxAdapterHostBytes: count,
      dtype: text,
      device: text,
      modules: fc
        .tuple(...MODULE_NAMES.map(() => pair))
        .map((pairs) =>
          Object.fromEntries(MODULE_NAMES.map((m, i) => [m, pairs[i] as [number, number]])),
        ),
      eosTokenIds: fc.array(u32, { maxLength: 4 }),
      quantization: fc.constantFrom("none", "fp8" as const),
    }),
  }),
  fc.record({
    type: fc.constant("stage_adapter" as const),
    body: fc.record({ adapterId: u32, path: text }),
  }),
  fc.record({
    type: fc.constant("adapter_staged" as const),
    body: fc.record({
      adapterId: u32,
      rank: count,
      scale: finite,
      targets: fc.array(text, { maxLength: 7 }),
      numPages: count,
      hostBytes: count,
    }),
  }),
  fc.record({
    type: fc.constant("load_adapter" as const),
    body: fc.record({ adapterId: u32, pages: fc.int32Array({ maxLength: 64 }) }),
  }),
  fc.record({
    type: fc.constant("drop_adapter" as const),
    body: fc.record({ adapterId: u32, tier: fc.constantFrom("pool", "host" as const) }),
  }),
  fc.record({ type: fc.constant("step" as const), body: stepPlan }),
  fc.record({ type: fc.constant("step_result" as const), body: stepResult }),
  fc.record({
    type: fc.constant("stats_result" as const),
    body: fc.record({
      hostCacheBytes: count,
      hostCacheAdapters: count,
      poolAdapters: count,
      liveSeqs: count,
      steps: count,
      deviceMemoryBytes: count,
    }),
  }),
  fc.record({
    type: fc.constant("error" as const),
    body: fc.record({ code: fc.constantFrom(...ERROR_CODES), message: text, requestId: u32 }),
  }),
  fc.record({
    type: fc.constant("compile_grammar" as const),
    body: fc.record({ grammarId: u32, kind: fc.constantFrom(...GRAMMAR_KINDS), source: text }),
  }),
  fc.record({
    type: fc.constant("grammar_compiled" as const),
    body: fc.record({ grammarId: u32, compileMs: finite, cached: fc.boolean() }),
  }),
  fc.record({ type: fc.constant("drop_grammar" as const), body: fc.record({ grammarId: u32 }) }),
  fc.constantFrom(
    { type: "stats" as const, body: {} },
    { type: "shutdown" as const, body: {} },
    { type: "ok" as const, body: {} },
  ),
);
