// ExecutorClient against the real executor with a fault injected on a chosen request
// (lorafleet_reference/faulty_executor.py): the step that starts a sequence with token
// 77 hangs, crashes the process, or fails. Each loss is charged to the steps in flight,
// so repeating it does not use up the restart policy's attempts (the serving loop fails
// the request instead, recovery.ts); honest long steps, queued behind each other, are
// not taken for hangs.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ExecutorRequestError, ExecutorUnavailable } from "./errors.ts";
import {
  clientsShutAfterEach,
  type ExecutorFault,
  HAVE_TINY,
  prefillPlan,
  pythonWithFault,
  rejection,
  tinyConfig,
} from "./test-fixtures.ts";

const TRIGGER = 77;
const dir = mkdtempSync(join(tmpdir(), "lorafleet-faults-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const { client } = clientsShutAfterEach();

const EXPECTED: Record<ExecutorFault, { error: new (...args: never[]) => Error; message: RegExp }> =
  {
    hang: {
      error: ExecutorUnavailable,
      message: /hung: no reply to step 2 in \d+ ms \(max\(floor 1000 ms/,
    },
    crash: {
      error: ExecutorUnavailable,
      message: /the executor exited \(SIGSEGV\)|closed its socket/,
    },
    error: {
      error: ExecutorRequestError,
      message: /^internal: step crashed: RuntimeError: fault injected into step 2$/,
    },
  };

describe.skipIf(!HAVE_TINY)("ExecutorClient with a fault on one request (tiny model)", () => {
  it.each(["hang", "crash", "error"] as const)(
    "%s: the culprit's step fails each time; the losses are charged, so the client never gives up",
    async (fault) => {
      const python = pythonWithFault(dir, fault, TRIGGER);
      // One restart in a row would be enough to give up, were these losses counted.
      const executor = client({
        pythonPath: python.path,
        restart: { initialBackoffMs: 10, maxAttempts: 1 },
        timeouts: { stepFloorMs: 1_000 },
      });
      await executor.init(tinyConfig());
      expect((await executor.step(prefillPlan(1, 1, [5, 6, 7], 0))).tokens).toHaveLength(1);
      for (let round = 0; round < 2; round++) {
        const started = Date.now();
        const failed = await rejection(executor.step(prefillPlan(2, 2, [TRIGGER, 6, 7], 10)));
        expect(failed).toBeInstanceOf(EXPECTED[fault].error);
        expect(failed.message).toMatch(EXPECTED[fault].message);
        expect(Date.now() - started).toBeLessThan(15_000);
        // After an `error` the executor still runs: the caller asks for the restart.
        await executor.recover();
        expect(executor.state).toBe("ready");
      }
      const result = await executor.step(prefillPlan(1, 1, [5, 6, 7], 0));
      expect(result.tokens).toHaveLength(1);
      expect(python.spawns()).toBe(1 + 2);
    },
  );

  it("takes long honest steps queued behind each other for work, not hangs", async () => {
    // A 50 ms floor: a deadline counted from sending, as before, would kill these at once.
    const executor = client({ timeouts: { stepFloorMs: 50 } });
    await executor.init({ ...tinyConfig(), maxNumBatchedTokens: 512, numPages: 4096 });
    const prompt = Array.from({ length: 500 }, (_, i) => 3 + (i % 500));
    const steps = [0, 1, 2].map((k) =>
      executor.step(prefillPlan(k + 1, k + 1, prompt, 2 * prompt.length * k)),
    );
    const results = await Promise.all(steps);
    expect(results.map((r) => r.tokens.length)).toEqual([1, 1, 1]);
    expect(executor.state).toBe("ready");
  });
});
