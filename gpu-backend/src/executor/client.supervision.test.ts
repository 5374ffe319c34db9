// ExecutorClient's supervision against the real Python executor and the tiny fixture
// model: a SIGKILLed or hung executor fails its calls retriably and is restarted; a
// crash loop (starts that fail, or executors that die at once) ends in "failed" after
// maxAttempts restarts in a row.

import { describe, expect, it } from "vitest";
import { ExecutorUnavailable } from "./errors.ts";
import {
  clientsShutAfterEach,
  HAVE_TINY,
  prefillPlan,
  rejection,
  tinyConfig,
} from "./test-fixtures.ts";

const { client } = clientsShutAfterEach();

describe.skipIf(!HAVE_TINY)(
  "ExecutorClient supervision with the tiny model (run `npm run setup` if skipped)",
  () => {
    it("a SIGKILL mid-request fails the call retriably and the executor is restarted", async () => {
      const executor = client();
      await executor.init(tinyConfig());
      const first = executor.pid as number;
      // Stopped first, so the step is surely still pending when the kill lands.
      process.kill(first, "SIGSTOP");
      const pending = executor.step(prefillPlan(1, 1, [5, 6, 7], 0));
      const stats = executor.stats();
      process.kill(first, "SIGKILL");
      const lost = await rejection(pending);
      expect(lost).toBeInstanceOf(ExecutorUnavailable);
      expect((lost as ExecutorUnavailable).retriable).toBe(true);
      expect(lost.message).toMatch(/executor unavailable: (socket|the executor exited)/);
      expect(await rejection(stats)).toBeInstanceOf(ExecutorUnavailable);
      // While it restarts, calls fail at once rather than wait.
      expect(executor.state).toBe("restarting");
      expect(await rejection(executor.stats())).toBeInstanceOf(ExecutorUnavailable);

      const model = await executor.recover();
      expect(model.numPages).toBe(1024);
      expect(executor.pid).not.toBe(first);
      const result = await executor.step(prefillPlan(1, 1, [5, 6, 7], 0));
      expect(result.tokens.length).toBe(1);
    });

    it("a hang is found by a step's timeout and, while idle, by the heartbeat", async () => {
      // The step's deadline (its floor: a 2-token step) < statsMs, so the step's own
      // deadline is what finds the first hang.
      const executor = client({
        timeouts: { stepFloorMs: 400, heartbeatIntervalMs: 200, statsMs: 2_000 },
      });
      await executor.init(tinyConfig());
      const first = executor.pid as number;
      process.kill(first, "SIGSTOP");
      const started = Date.now();
      const hung = await rejection(executor.step(prefillPlan(1, 1, [5, 6], 0)));
      expect(hung).toBeInstanceOf(ExecutorUnavailable);
      expect(hung.message).toMatch(/hung: no reply to step/);
      expect(Date.now() - started).toBeLessThan(5_000);
      await executor.recover();
      const second = executor.pid as number;
      expect(second).not.toBe(first);

      process.kill(second, "SIGSTOP"); // no call in flight now: only the heartbeat can tell
      await expect.poll(() => executor.state, { timeout: 10_000 }).toBe("restarting");
      await executor.recover();
      expect(executor.pid).not.toBe(second);
    });

    it("gives up after maxAttempts failed restarts, then recovers on an explicit restart", async () => {
      const executor = client({ restart: { initialBackoffMs: 10, maxAttempts: 1 } });
      await executor.init(tinyConfig());
      const given = await rejection(executor.restart(tinyConfig("/no/such/model")));
      expect(given).toBeInstanceOf(ExecutorUnavailable);
      expect(given.message).toMatch(/did not come back \(attempts: 1\): .*no\/such\/model/);
      expect(executor.state).toBe("failed");
      expect(await rejection(executor.stats())).toBeInstanceOf(ExecutorUnavailable);
      // Given up: recover() tries nothing more; only an explicit restart() starts over.
      expect(await rejection(executor.recover())).toBe(given);
      expect(executor.state).toBe("failed");
      await executor.restart(tinyConfig());
      expect(executor.state).toBe("ready");
    });

    it("restarts an executor that dies as soon as it is ready maxAttempts times in a row, then gives up", async () => {
      // Before one policy covered both, only failed starts counted: this loop never ended.
      const executor = client({ restart: { initialBackoffMs: 10, maxAttempts: 3 } });
      await executor.init(tinyConfig());
      const killed: number[] = [];
      for (;;) {
        await expect
          .poll(
            () =>
              executor.state === "failed" ||
              (executor.state === "ready" && !killed.includes(executor.pid as number)),
            { timeout: 30_000 },
          )
          .toBe(true);
        if (executor.state === "failed") break;
        const pid = executor.pid as number;
        killed.push(pid);
        process.kill(pid, "SIGKILL");
      }
      expect(killed.length).toBe(1 + 3); // the first executor and 3 restarts
      const given = await rejection(executor.recover());
      expect(given).toBeInstanceOf(ExecutorUnavailable);
      expect(given.message).toMatch(
        /did not come back \(attempts: 3\): the executor (exited \(SIGKILL\)|closed its socket)/,
      );
    });
  },
);
