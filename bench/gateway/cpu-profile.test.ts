import { describe, expect, it } from "vitest";
import { type CpuProfile, shares } from "./cpu-profile.ts";

const frame = (functionName: string, line: number) => ({
  functionName,
  url: "file:///tmp/bundle/worker.mjs",
  lineNumber: line - 1,
});

// root -> handler -> { parse, fetch }, handler -> recurse -> recurse
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: frame("(root)", 0), children: [2] },
    { id: 2, callFrame: frame("handler", 10), children: [3, 4, 5] },
    { id: 3, callFrame: frame("parse", 20) },
    { id: 4, callFrame: frame("", 30) },
    { id: 5, callFrame: frame("recurse", 40), children: [6] },
    { id: 6, callFrame: frame("recurse", 40) },
  ],
  samples: [3, 3, 4, 2, 6, 6, 3, 1],
  startTime: 0,
  endTime: 800,
};

describe("shares", () => {
  it("gives each function its own samples and those of what it called, recursion once", () => {
    const { samples, self, inclusive } = shares(profile);
    expect(samples).toBe(8);
    expect(self).toEqual([
      { name: "parse worker.mjs:20", share: 3 / 8 },
      { name: "recurse worker.mjs:40", share: 2 / 8 },
      { name: "(anonymous) worker.mjs:30", share: 1 / 8 },
      { name: "(root) worker.mjs:0", share: 1 / 8 },
      { name: "handler worker.mjs:10", share: 1 / 8 },
    ]);
    expect(inclusive.slice(0, 3)).toEqual([
      { name: "(root) worker.mjs:0", share: 1 },
      { name: "handler worker.mjs:10", share: 7 / 8 },
      { name: "parse worker.mjs:20", share: 3 / 8 },
    ]);
    expect(inclusive.find((s) => s.name.startsWith("recurse"))?.share).toBe(2 / 8);
  });

  it("gives an empty profile no shares", () => {
    expect(shares({ ...profile, samples: [] })).toEqual({ samples: 0, self: [], inclusive: [] });
  });
});
