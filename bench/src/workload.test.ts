import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Prng } from "./prng.ts";
import { coefficientOfVariation, mean } from "./stats.ts";
import { readTrace, TraceFileError, traceToJsonl, writeTrace } from "./trace-file.ts";
import { defaultSpec, generateTrace, type WorkloadSpec, WorkloadSpecError } from "./workload.ts";

const spec = (over: Partial<WorkloadSpec>): WorkloadSpec => ({ ...defaultSpec, ...over });

function gaps(arrivals: number[]): number[] {
  return arrivals.map((t, i) => t - (i === 0 ? 0 : (arrivals[i - 1] as number)));
}

describe("Prng", () => {
  it("repeats for a seed and differs between seeds", () => {
    const a = new Prng(7);
    const b = new Prng(7);
    const c = new Prng(8);
    const xs = Array.from({ length: 8 }, () => a.nextU32());
    expect(Array.from({ length: 8 }, () => b.nextU32())).toEqual(xs);
    expect(Array.from({ length: 8 }, () => c.nextU32())).not.toEqual(xs);
  });

  it("draws gamma variates with mean k and variance k (shape below and above 1)", () => {
    for (const shape of [0.25, 1, 4]) {
      const rng = new Prng(3);
      const xs = Array.from({ length: 40_000 }, () => rng.gamma(shape));
      const m = mean(xs) as number;
      expect(m).toBeCloseTo(shape, 1);
      expect(coefficientOfVariation(xs) as number).toBeCloseTo(1 / Math.sqrt(shape), 1);
    }
  });

  it("keeps int() inside inclusive bounds and hits both ends", () => {
    const rng = new Prng(1);
    const seen = new Set(Array.from({ length: 2000 }, () => rng.int(8, 12)));
    expect([...seen].sort((a, b) => a - b)).toEqual([8, 9, 10, 11, 12]);
  });
});

describe("generateTrace", () => {
  it("is a pure function of its spec", () => {
    const s = spec({ seed: 11, numRequests: 200 });
    expect(generateTrace(s)).toEqual(generateTrace(s));
    expect(generateTrace({ ...s, seed: 12 }).requests).not.toEqual(generateTrace(s).requests);
  });

  it("arrives at the asked mean rate and CV (Gamma process)", () => {
    for (const [rate, cv] of [
      [2, 1],
      [10, 4],
      [0.5, 0.5],
    ] as const) {
      const trace = generateTrace(
        spec({
          seed: 5,
          numRequests: 20_000,
          arrival: { kind: "gamma", rate, cv },
          inputLen: [1, 1],
        }),
      );
      const g = gaps(trace.requests.map((r) => r.arrivalS));
      expect(1 / (mean(g) as number)).toBeCloseTo(rate, rate < 1 ? 1 : 0);
      expect(Math.abs((coefficientOfVariation(g) as number) - cv) / cv).toBeLessThan(0.1);
    }
  });

  it("sends every request at t = 0 for a burst", () => {
    const trace = generateTrace(spec({ arrival: { kind: "burst" }, numRequests: 10 }));
    expect(trace.requests.every((r) => r.arrivalS === 0)).toBe(true);
  });

  it("orders adapter popularity by Zipf: counts fall with index, ratio ≈ 2^alpha", () => {
    const trace = generateTrace(
      spec({ seed: 9, numAdapters: 50, numRequests: 50_000, inputLen: [1, 1] }),
    );
    const counts = new Map<string, number>();
    for (const r of trace.requests)
      counts.set(r.adapter as string, (counts.get(r.adapter as string) ?? 0) + 1);
    const byIndex = trace.adapters.map((a) => counts.get(a.name) ?? 0);
    for (let i = 0; i < 5; i++)
      expect(byIndex[i] as number).toBeGreaterThan(byIndex[i + 1] as number);
    expect((byIndex[0] as number) / (byIndex[1] as number)).toBeCloseTo(2, 0);
    // alpha = 0 is uniform: the most popular adapter gets no more than ~1.3x its share.
    const flat = generateTrace(
      spec({
        seed: 9,
        numAdapters: 10,
        numRequests: 20_000,
        assignment: { kind: "zipf", alpha: 0 },
        inputLen: [1, 1],
      }),
    );
    const top = Math.max(
      ...flat.adapters.map((a) => flat.requests.filter((r) => r.adapter === a.name).length),
    );
    expect(top / 2000).toBeLessThan(1.15);
  });

  it("draws lengths in range, prompts of that length, ranks from the set", () => {
    const trace = generateTrace(
      spec({
        seed: 2,
        numRequests: 500,
        inputLen: [8, 16],
        outputLen: [4, 6],
        promptTokenIds: [3, 50],
      }),
    );
    const inputs = new Set(trace.requests.map((r) => r.inputLen));
    expect(Math.min(...inputs)).toBe(8);
    expect(Math.max(...inputs)).toBe(16);
    for (const r of trace.requests) {
      expect(r.outputLen).toBeGreaterThanOrEqual(4);
      expect(r.outputLen).toBeLessThanOrEqual(6);
      expect(r.prompt).toHaveLength(r.inputLen);
      expect(r.prompt.every((t) => t >= 3 && t < 50)).toBe(true);
    }
    expect(new Set(trace.adapters.map((a) => a.rank))).toEqual(new Set([8, 16, 32, 64]));
  });

  it("changing the rate keeps adapters, lengths and prompts", () => {
    const a = generateTrace(spec({ seed: 4, numRequests: 50 }));
    const b = generateTrace(
      spec({ seed: 4, numRequests: 50, arrival: { kind: "gamma", rate: 9, cv: 2 } }),
    );
    const strip = (t: typeof a) => t.requests.map(({ arrivalS: _, ...rest }) => rest);
    expect(strip(b)).toEqual(strip(a));
    expect(b.adapters).toEqual(a.adapters);
  });

  it("assigns round-robin and base-only", () => {
    const rr = generateTrace(
      spec({ numAdapters: 4, numRequests: 8, assignment: { kind: "round-robin" } }),
    );
    expect(rr.requests.map((r) => r.adapter)).toEqual(
      [0, 1, 2, 3, 0, 1, 2, 3].map((i) => `adapter-000${i}`),
    );
    const base = generateTrace(spec({ numAdapters: 0, numRequests: 3 }));
    expect(base.requests.map((r) => r.adapter)).toEqual([null, null, null]);
  });

  it("refuses bad specs by name", () => {
    expect(() => generateTrace(spec({ arrival: { kind: "gamma", rate: 0, cv: 1 } }))).toThrow(
      WorkloadSpecError,
    );
    expect(() => generateTrace(spec({ inputLen: [10, 5] }))).toThrow(/inputLen/);
    expect(() => generateTrace(spec({ ranks: [] }))).toThrow(/ranks/);
    expect(() => generateTrace(spec({ promptTokenIds: [5, 5] }))).toThrow(/promptTokenIds/);
  });
});

describe("trace files", () => {
  it("round-trip through JSONL", () => {
    const dir = mkdtempSync(join(tmpdir(), "trace-"));
    const trace = generateTrace(spec({ seed: 1, numRequests: 30 }));
    writeTrace(join(dir, "t.jsonl"), trace);
    expect(readTrace(join(dir, "t.jsonl"))).toEqual(trace);
    expect(traceToJsonl(trace).split("\n")[0]).toContain('"type":"trace"');
  });

  it("refuses a damaged file with the line number", () => {
    const dir = mkdtempSync(join(tmpdir(), "trace-"));
    const lines = traceToJsonl(generateTrace(spec({ numRequests: 3 }))).split("\n");
    lines[2] = lines[2]?.replace('"adapter":"', '"adapter":"zz') ?? "";
    writeFileSync(join(dir, "bad.jsonl"), lines.join("\n"));
    expect(() => readTrace(join(dir, "bad.jsonl"))).toThrow(TraceFileError);
    expect(() => readTrace(join(dir, "bad.jsonl"))).toThrow(/bad.jsonl:3/);
  });
});
