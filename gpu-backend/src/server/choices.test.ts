import { describe, expect, it } from "vitest";
import type { GenerateRequest, ServingLoop } from "../serving/serving-loop.ts";
import { startChoices } from "./choices.ts";
import { ApiError } from "./openai-error.ts";

describe("startChoices", () => {
  it("answers more choices than the server ever holds with 400, not a 429 to retry forever", async () => {
    // Found by the reliability suite: 2000 prompts × n=16 got 429 queue_full.
    const serving = {
      maxUnfinished: 8,
      generate: () => {
        throw new Error("nothing may start");
      },
    } as unknown as ServingLoop;
    const request = {} as GenerateRequest;
    const stillHere = new AbortController().signal;
    const tooMany = await startChoices(serving, [request, request, request], 3, stillHere).catch(
      (e) => e,
    );
    expect(tooMany).toBeInstanceOf(ApiError);
    expect(tooMany).toMatchObject({ status: 400, param: "prompt", code: "invalid_value" });
    const tooManyN = await startChoices(serving, [request], 9, stillHere).catch((e) => e);
    expect(tooManyN).toMatchObject({ status: 400, param: "n" });
  });

  it("cancels choices whose client left while they were starting (the signal fired before any listener)", async () => {
    const leave = new AbortController();
    const cancelled: number[] = [];
    const serving = {
      maxUnfinished: 8,
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
