import { describe, expect, it } from "vitest";
import { summarize } from "./metrics.ts";
import type { RequestRecord } from "./request-record.ts";

function record(
  id: number,
  adapter: string | null,
  scheduledS: number,
  sentS: number,
  firstTokenS: number,
): RequestRecord {
  return {
    id,
    adapter,
    model: adapter ?? "base",
    inputTokens: 4,
    requestedTokens: 2,
    scheduledS,
    sentS,
    firstTokenS,
    endS: firstTokenS + 0.1,
    outputTokens: 2,
    cachedTokens: 0,
    tokenCount: "usage",
    status: "ok",
    finishReason: "length",
    error: null,
  };
}

describe("summarize", () => {
  it("splits first-token latency into the client's wait and the server's share, and times first uses", () => {
    const records = [
      record(0, "a", 0, 0, 0.3), // a's first use: cold
      record(1, "a", 0, 1, 1.05), // held 1 s by the client, then 50 ms in the server
      record(2, null, 0, 0, 0.05),
      record(3, "b", 0, 2, 2.4), // b's first use, sent last
    ];
    const m = summarize(records, 6);
    expect(m.firstTokenS.max).toBeCloseTo(2.4);
    expect(m.firstTokenFromSendS.max).toBeCloseTo(0.4);
    expect(m.firstTokenFromSendS.p50).toBeCloseTo((0.05 + 0.3) / 2);
    // a at 0.3 s and b at 0.4 s; the base request and a's second are not first uses
    expect(m.firstUseFirstTokenFromSendS.mean).toBeCloseTo(0.35);
    expect(m.firstUseFirstTokenFromSendS.max).toBeCloseTo(0.4);
  });
});
