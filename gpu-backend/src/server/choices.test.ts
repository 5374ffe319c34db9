import { describe, expect, it } from "vitest";
import type { GenerateRequest, ServingLoop } from "../serving/serving-loop.ts";
import { startChoices } from "./choices.ts";

describe("startChoices", () => {
  it("cancels choices whose client left while they were starting (the signal fired before any listener)", async () => {
    const leave = new AbortController();
    const cancelled: number[] = [];
    const serving = {
      reserve: () => ({ release: () => {} }),
      // the client leaves while the choice starts (an adapter download, a full queue)
      generate: async (_request: GenerateRequest) => {
        leave.abort();
        const id = cancelled.length + 100;
        return {
          [Symbol.asyncIterator]: () => ({
            next: () => new Promise(() => {}),
            return: async () => {
              cancelled.push(id);
              return { done: true, value: undefined };
            },
          }),
        };
      },
    } as unknown as ServingLoop;
    const request = { sampling: { seed: null }, promptIds: [1] } as unknown as GenerateRequest;
    const started = await startChoices(serving, [request], 2, leave.signal);
    expect(started).toHaveLength(2);
    expect(cancelled).toHaveLength(2);
  });
});
