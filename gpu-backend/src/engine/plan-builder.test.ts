import { describe, expect, it } from "vitest";
import { inRowOrder, type PlannedSeq } from "./plan-builder.ts";

// inRowOrder reads only these fields.
const planned = (seqId: number, adapterId: number, numNewTokens: number) =>
  ({ seqId, adapterId, numNewTokens }) as PlannedSeq;

describe("inRowOrder", () => {
  it("puts one-token seqs first, each part grouped by adapter, in planned order within", () => {
    const rows = inRowOrder([
      planned(0, 7, 1),
      planned(1, 3, 64),
      planned(2, -1, 1),
      planned(3, 7, 1),
      planned(4, 3, 1),
      planned(5, -1, 32),
      planned(6, 3, 16),
      planned(7, 7, 1),
    ]);
    expect(rows.map((s) => s.seqId)).toEqual([2, 4, 0, 3, 7, 5, 1, 6]);
  });

  it("leaves the planned list as it was", () => {
    const list = [planned(0, 2, 1), planned(1, 1, 1)];
    inRowOrder(list);
    expect(list.map((s) => s.seqId)).toEqual([0, 1]);
  });
});
