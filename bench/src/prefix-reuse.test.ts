import { describe, expect, it } from "vitest";
import { idealCachedTokens } from "./prefix-reuse.ts";
import type { TraceRequest } from "./workload.ts";

const request = (id: number, prompt: number[], adapter: string | null = "a"): TraceRequest => ({
  id,
  arrivalS: id,
  adapter,
  inputLen: prompt.length,
  outputLen: 1,
  prompt,
});
const run = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

describe("idealCachedTokens", () => {
  it("counts the leading full blocks an earlier prompt of the same adapter had", () => {
    expect(
      idealCachedTokens(
        [
          request(0, run(10)),
          request(1, [...run(8), 99, 98]), // blocks [0..3], [4..7] seen: 8
          request(2, run(8)), // all 8 seen, but the last token is computed again: 7
          request(3, run(10), "b"), // another adapter: nothing
          request(4, run(10), null), // the base model: nothing
          request(5, [1, ...run(9)]), // differs in the first block: nothing
        ],
        4,
      ),
    ).toBe(8 + 7);
  });

  it("goes by arrival, not by id", () => {
    const later = { ...request(0, run(8)), arrivalS: 5 };
    expect(idealCachedTokens([later, request(1, run(9))], 4)).toBe(7);
  });
});
