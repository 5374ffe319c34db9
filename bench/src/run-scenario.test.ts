import { describe, expect, it } from "vitest";
import { warmUpRequests } from "./run-scenario.ts";
import type { TraceRequest } from "./workload.ts";

const request = (id: number, adapter: string | null): TraceRequest => ({
  id,
  arrivalS: id,
  adapter,
  inputLen: 128,
  outputLen: 128,
  prompt: Array.from({ length: 128 }, (_, i) => i + 3),
});

describe("warmUpRequests", () => {
  it("sends one short request per distinct adapter at once, none for the base model", () => {
    const warm = warmUpRequests([
      request(0, "a"),
      request(1, null),
      request(2, "b"),
      request(3, "a"),
    ]);
    expect(warm.map((r) => [r.adapter, r.arrivalS, r.outputLen, r.prompt.length])).toEqual([
      ["a", 0, 1, 8],
      ["b", 0, 1, 8],
    ]);
  });
});
