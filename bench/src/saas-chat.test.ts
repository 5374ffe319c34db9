import { describe, expect, it } from "vitest";
import { defaultSaas, saasChatTrace } from "./saas-chat.ts";

describe("saasChatTrace", () => {
  const trace = saasChatTrace({ ...defaultSaas, durationS: 30 }, 32000, 4096);
  const byAdapter = new Map<string, typeof trace.requests>();
  for (const r of trace.requests) {
    byAdapter.set(r.adapter as string, [...(byAdapter.get(r.adapter as string) ?? []), r]);
  }

  it("starts every prompt of an adapter with its own ~1,500-token system prompt", () => {
    const systems = new Map<string, number[]>();
    for (const [adapter, requests] of byAdapter) {
      // the longest common prefix of the adapter's prompts holds its system prompt
      const first = requests[0]?.prompt ?? [];
      let common = first.length;
      for (const r of requests) {
        let i = 0;
        while (i < common && r.prompt[i] === first[i]) i++;
        common = i;
      }
      if (requests.length > 2) expect(common).toBeGreaterThanOrEqual(1400);
      systems.set(adapter, first.slice(0, 1400));
    }
    const distinct = new Set([...systems.values()].map((s) => s.join(",")));
    expect(distinct.size).toBe(systems.size);
  });

  it("grows each session by its turns: the next prompt is the last one, its answer and a user turn", () => {
    const ordered = trace.requests;
    let followUps = 0;
    for (const [i, r] of ordered.entries()) {
      expect(r.outputLen).toBeGreaterThanOrEqual(100);
      expect(r.outputLen).toBeLessThanOrEqual(300);
      expect(r.inputLen + r.outputLen).toBeLessThanOrEqual(4096);
      const previous = ordered
        .slice(0, i)
        .findLast(
          (p) =>
            p.adapter === r.adapter &&
            r.prompt.length > p.prompt.length + p.outputLen &&
            p.prompt.every((t, k) => r.prompt[k] === t),
        );
      if (previous === undefined) continue;
      followUps++;
      const user = r.inputLen - previous.inputLen - previous.outputLen;
      expect(user).toBeGreaterThanOrEqual(50);
      expect(r.arrivalS).toBeGreaterThan(previous.arrivalS + previous.outputLen * 0.02 + 2 - 1e-9);
    }
    expect(followUps).toBeGreaterThan(trace.requests.length / 2);
    expect(trace.requests.map((r) => r.id)).toEqual(trace.requests.map((_, i) => i));
  });

  it("is a pure function of its spec; sessions arrive over the duration", () => {
    expect(saasChatTrace({ ...defaultSaas, durationS: 30 }, 32000, 4096)).toEqual(trace);
    const firsts = trace.requests.filter((r) => r.inputLen < 1700);
    expect(Math.max(...firsts.map((r) => r.arrivalS))).toBeLessThanOrEqual(30);
  });
});
