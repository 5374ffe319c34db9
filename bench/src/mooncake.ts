/**
 * The Mooncake FAST'25 conversation trace (kvcache-ai/Mooncake,
 * FAST25-release/traces/conversation_trace.jsonl: 12,031 requests over ~1 hour) as our
 * workload. Each row is `{timestamp (ms), input_length, output_length, hash_ids}`; hash id
 * i names the i-th 512-token block of the input, chained (the same id means the same
 * block after the same blocks), so shared leading ids are shared prefixes: 37% of input
 * tokens over the whole trace. Scaled to our shapes:
 *   - lengths / `lengthDivisor` (8 for 7B: a 512-token block becomes 64 tokens),
 *   - each hash id a fixed pseudo-random block of tokens (seeded by the id), the last
 *     block cut to the scaled input's remainder,
 *   - one adapter per conversation root (the first block after the one every request
 *     shares), Zipf over `numAdapters`, so a conversation keeps its adapter,
 *   - timestamps divided by `timeScale`,
 *   - a request longer than the model's context keeps its first tokens (its prefix, the
 *     part that is shared) and its output length.
 *
 *   const rows = readMooncakeRows("carry/mooncake_conversation_trace.jsonl.gz");
 *   const trace = mooncakeTrace(rows, { ...defaultMooncake, requests: 1000 }, 32000, 4096);
 */
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { Prng } from "./prng.ts";
import { type Trace, type TraceAdapter, type TraceRequest, zipfCumulative } from "./workload.ts";

export interface MooncakeRow {
  timestamp: number;
  input_length: number;
  output_length: number;
  hash_ids: number[];
}

export interface MooncakeSpec {
  kind: "mooncake";
  /** the trace file (.jsonl, or .jsonl.gz) */
  path: string;
  seed: number;
  /** the first this many rows (the trace is in arrival order) */
  requests: number;
  lengthDivisor: number;
  timeScale: number;
  numAdapters: number;
  zipfAlpha: number;
  ranks: number[];
}

export const MOONCAKE_BLOCK = 512;

export const defaultMooncake: Omit<MooncakeSpec, "path"> = {
  kind: "mooncake",
  seed: 0,
  requests: 1000,
  lengthDivisor: 8,
  timeScale: 5,
  numAdapters: 1000,
  zipfAlpha: 1,
  ranks: [8, 16, 32, 64],
};

export class MooncakeTraceError extends Error {
  override name = "MooncakeTraceError";
}

/** The rows of a Mooncake trace file, checked. */
export function readMooncakeRows(path: string): MooncakeRow[] {
  const bytes = readFileSync(path);
  const text = path.endsWith(".gz") ? gunzipSync(bytes).toString("utf8") : bytes.toString("utf8");
  return text
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line, at) => {
      const row = JSON.parse(line) as MooncakeRow;
      const ok =
        Number.isFinite(row.timestamp) &&
        Number.isSafeInteger(row.input_length) &&
        row.input_length > 0 &&
        Number.isSafeInteger(row.output_length) &&
        Array.isArray(row.hash_ids) &&
        row.hash_ids.length === Math.ceil(row.input_length / MOONCAKE_BLOCK);
      if (!ok) throw new MooncakeTraceError(`${path}:${at + 1}: not a Mooncake trace row`);
      return row;
    });
}

/**
 * Our trace from Mooncake rows. `vocab`: prompt ids are in [3, vocab); `maxContext`: the
 * model's positions (prompt + output).
 */
export function mooncakeTrace(
  rows: readonly MooncakeRow[],
  spec: MooncakeSpec,
  vocab: number,
  maxContext: number,
): Trace {
  const block = MOONCAKE_BLOCK / spec.lengthDivisor;
  if (!Number.isInteger(block) || block < 1) {
    throw new MooncakeTraceError(`lengthDivisor must divide ${MOONCAKE_BLOCK}`);
  }
  const rankRng = new Prng(spec.seed ^ 0x5eed);
  const adapters: TraceAdapter[] = Array.from({ length: spec.numAdapters }, (_, i) => ({
    name: `mooncake-${String(i).padStart(4, "0")}`,
    rank: spec.ranks[rankRng.int(0, spec.ranks.length - 1)] as number,
  }));
  const cumulative = zipfCumulative(spec.numAdapters, spec.zipfAlpha);
  const blocks = new Map<number, number[]>();
  const blockOf = (id: number): number[] => {
    let tokens = blocks.get(id);
    if (tokens === undefined) {
      const rng = new Prng(spec.seed * 1_000_003 + id);
      tokens = Array.from({ length: block }, () => rng.int(3, vocab - 1));
      blocks.set(id, tokens);
    }
    return tokens;
  };
  const adapterOfRoot = new Map<number, string>();
  const selected = rows.slice(0, spec.requests);
  const start = selected[0]?.timestamp ?? 0;
  const requests: TraceRequest[] = selected.map((row, id) => {
    const outputLen = Math.max(1, Math.round(row.output_length / spec.lengthDivisor));
    const scaled = Math.max(1, Math.round(row.input_length / spec.lengthDivisor));
    const inputLen = Math.max(1, Math.min(scaled, maxContext - outputLen));
    const prompt = row.hash_ids.flatMap(blockOf).slice(0, inputLen);
    const root = row.hash_ids[1] ?? (row.hash_ids[0] as number);
    let adapter = adapterOfRoot.get(root);
    if (adapter === undefined) {
      const index = new Prng(spec.seed * 7_919 + root).pickCumulative(cumulative);
      adapter = (adapters[index] as TraceAdapter).name;
      adapterOfRoot.set(root, adapter);
    }
    const arrivalS = (row.timestamp - start) / 1000 / spec.timeScale;
    return { id, arrivalS, adapter, inputLen, outputLen, prompt };
  });
  return { spec, adapters, requests };
}
