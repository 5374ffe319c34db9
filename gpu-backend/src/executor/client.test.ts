// ExecutorClient against the real Python executor and the tiny fixture model: the
// handshake, typed calls, named errors, recover() semantics, failures to start.
// Supervision (crash, hang, give-up) is in client.supervision.test.ts.

import { describe, expect, it } from "vitest";
import { BadMessage } from "../protocol/errors.ts";
import { ExecutorClient } from "./client.ts";
import { ExecutorRequestError, ExecutorUnavailable } from "./errors.ts";
import {
  clientsShutAfterEach,
  HAVE_TINY,
  prefillPlan,
  RecordingLogger,
  rejection,
  TEST_PYTHON,
  TINY_ADAPTER,
  tinyConfig,
} from "./test-fixtures.ts";

const { client, track } = clientsShutAfterEach();

describe.skipIf(!HAVE_TINY)(
  "ExecutorClient with the tiny model (run `npm run setup` if skipped)",
  () => {
    it("does the handshake, stages, loads, steps, reports stats and shuts down", async () => {
      const logger = new RecordingLogger();
      const executor = new ExecutorClient({ pythonPath: TEST_PYTHON, logger });
      track(executor);
      const model = await executor.init(tinyConfig());
      expect(model.numPages).toBe(1024);
      expect(model.device).toBe("cpu");
      expect(executor.state).toBe("ready");

      const staged = await executor.stageAdapter(1, TINY_ADAPTER);
      expect(staged.rank).toBe(8);
      const pages = Int32Array.from({ length: staged.numPages }, (_, i) => i);
      // The load and the step are in flight together; both complete.
      const [, result] = await Promise.all([
        executor.loadAdapter(1, pages),
        executor.step(prefillPlan(1, 1, [5, 17, 42], staged.numPages)),
      ]);
      expect([...result.seqIds]).toEqual([1]);
      const withAdapter = await executor.step(
        prefillPlan(2, 2, [5, 17, 42], staged.numPages + 8, 1),
      );
      expect(withAdapter.tokens.length).toBe(1);
      const stats = await executor.stats();
      expect(stats.poolAdapters).toBe(1);
      expect(stats.liveSeqs).toBe(2);

      await executor.shutdown();
      expect(executor.state).toBe("closed");
      expect(logger.lines.some((line) => line.includes("executor INFO connected"))).toBe(true);
      expect(await rejection(executor.stats())).toBeInstanceOf(ExecutorUnavailable);
    });

    it("answers refused requests with named, non-retriable errors and stays up", async () => {
      const executor = client();
      await executor.init(tinyConfig());
      const unknown = await rejection(executor.loadAdapter(9, Int32Array.of(1, 2)));
      expect(unknown).toBeInstanceOf(ExecutorRequestError);
      expect((unknown as ExecutorRequestError).code).toBe("unknown_adapter");
      expect((unknown as ExecutorRequestError).retriable).toBe(false);
      const invalid = await rejection(executor.stageAdapter(2, "/no/such/adapter"));
      expect((invalid as ExecutorRequestError).code).toBe("adapter_invalid");
      // A plan whose arrays disagree never leaves: the encoder names the problem.
      const plan = { ...prefillPlan(1, 1, [1, 2], 0), flags: new Uint8Array(3) };
      const bad = await rejection(executor.step(plan));
      expect(bad).toBeInstanceOf(BadMessage);
      expect(bad.message).toMatch(/flags has 3 elements/);
      expect(executor.state).toBe("ready");
      expect((await executor.stats()).steps).toBe(0);
    });

    it("recover() on a used executor replaces it; on a fresh one returns it", async () => {
      const executor = client();
      await executor.init(tinyConfig());
      const first = executor.pid;
      await executor.recover();
      expect(executor.pid).toBe(first);
      await executor.stats();
      await executor.recover();
      expect(executor.pid).not.toBe(first);
    });

    it("a model that cannot load fails init by name, leaving no process", async () => {
      const executor = client();
      const failed = await rejection(executor.init(tinyConfig("/no/such/model")));
      expect(failed).toBeInstanceOf(ExecutorRequestError);
      expect(failed.message).toMatch(/no\/such\/model/);
      expect(executor.state).toBe("failed");
      expect(executor.pid).toBeUndefined();
      const after = await rejection(executor.recover());
      expect(after).toBeInstanceOf(ExecutorUnavailable);
      expect(after.message).toMatch(/^the executor did not start: .*no\/such\/model/);
    });
  },
);

describe("ExecutorClient without a model", () => {
  it("a Python that cannot start fails init with ExecutorUnavailable", async () => {
    const executor = new ExecutorClient({
      pythonPath: "/no/such/python",
      logger: new RecordingLogger(),
    });
    track(executor);
    const failed = await rejection(executor.init(tinyConfig()));
    expect(failed).toBeInstanceOf(ExecutorUnavailable);
    expect(failed.message).toMatch(/ENOENT/);
  });

  it("an executor that never connects fails init after connectMs", async () => {
    const executor = new ExecutorClient({
      env: { PYTHONPATH: "/nonexistent", PYTHONSAFEPATH: "1", PYTHONNOUSERSITE: "1" },
      pythonPath: "/bin/sleep",
      logger: new RecordingLogger(),
      timeouts: { connectMs: 300 },
    });
    track(executor);
    const failed = await rejection(executor.init(tinyConfig()));
    expect(failed).toBeInstanceOf(ExecutorUnavailable);
  });
});
