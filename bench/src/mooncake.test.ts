import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import {
  defaultMooncake,
  type MooncakeRow,
  MooncakeTraceError,
  mooncakeTrace,
  readMooncakeRows,
} from "./mooncake.ts";

const rows: MooncakeRow[] = [
  // one shared first block (a system prompt), then two conversations (roots 1 and 3)
  { timestamp: 0, input_length: 1000, output_length: 80, hash_ids: [0, 1] },
  { timestamp: 2000, input_length: 1500, output_length: 8, hash_ids: [0, 3, 4] },
  { timestamp: 5000, input_length: 1536, output_length: 16, hash_ids: [0, 1, 2] },
];
const spec = { ...defaultMooncake, path: "t", numAdapters: 50, requests: 10, timeScale: 2 };

describe("mooncakeTrace", () => {
  it("scales lengths and time, makes each hash id one fixed block, one adapter per root", () => {
    const trace = mooncakeTrace(rows, spec, 32000, 4096);
    expect(trace.requests.map((r) => [r.arrivalS, r.inputLen, r.outputLen])).toEqual([
      [0, 125, 10],
      [1, 188, 1],
      [2.5, 192, 2],
    ]);
    const [a, b, c] = trace.requests.map((r) => r.prompt) as [number[], number[], number[]];
    // hash id 0 is the same 64 tokens everywhere; 1 is the same in requests 0 and 2
    expect(b.slice(0, 64)).toEqual(a.slice(0, 64));
    expect(c.slice(0, 125)).toEqual(a);
    expect(b.slice(64, 128)).not.toEqual(a.slice(64, 128));
    expect(a.every((t) => t >= 3 && t < 32000)).toBe(true);
    const [r0, r1, r2] = trace.requests;
    expect(r2?.adapter).toBe(r0?.adapter);
    expect(r0?.adapter).toMatch(/^mooncake-\d{4}$/);
    expect(trace.adapters).toHaveLength(50);
    expect(r1?.adapter).toMatch(/^mooncake-\d{4}$/);
    // a pure function of the rows and the spec
    expect(mooncakeTrace(rows, spec, 32000, 4096)).toEqual(trace);
  });

  it("keeps the first tokens of a request longer than the context, and the first N rows", () => {
    const trace = mooncakeTrace(rows, { ...spec, requests: 2 }, 32000, 150);
    expect(trace.requests.map((r) => [r.inputLen, r.outputLen])).toEqual([
      [125, 10],
      [149, 1],
    ]);
    const full = mooncakeTrace(rows, spec, 32000, 4096);
    expect(trace.requests[1]?.prompt).toEqual(full.requests[1]?.prompt.slice(0, 149));
  });

  it("reads the trace file, gzipped or not, and refuses rows that are not the trace's", () => {
    const dir = mkdtempSync(join(tmpdir(), "mooncake-"));
    const text = rows.map((r) => JSON.stringify(r)).join("\n");
    writeFileSync(join(dir, "t.jsonl"), text);
    writeFileSync(join(dir, "t.jsonl.gz"), gzipSync(text));
    expect(readMooncakeRows(join(dir, "t.jsonl"))).toEqual(rows);
    expect(readMooncakeRows(join(dir, "t.jsonl.gz"))).toEqual(rows);
    writeFileSync(join(dir, "bad.jsonl"), JSON.stringify({ ...rows[0], hash_ids: [0] }));
    expect(() => readMooncakeRows(join(dir, "bad.jsonl"))).toThrow(MooncakeTraceError);
  });
});
