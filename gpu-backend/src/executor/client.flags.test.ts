// The executor's settings besides `init` travel as its command-line flags: from the
// backend's config (flag or its LORAFLEET_* twin) through the client onto the executor's
// command line, never through its environment. The executor side (its flags parsed into
// one options record) is tested in executor/tests/test_options.py.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, parseServerConfig } from "../server/config.ts";
import { ExecutorClient } from "./client.ts";
import { ExecutorUnavailable } from "./errors.ts";
import { RecordingLogger, rejection, tinyConfig } from "./test-fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "lorafleet-flags-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the backend's executor flags", () => {
  it("tensor parallel size is a positive integer flag (and env variable), 1 by default", () => {
    expect(parseServerConfig(["--model", "m"], {}).tensorParallelSize).toBe(1);
    expect(
      parseServerConfig(["--model", "m", "--tensor-parallel-size", "2"], {}).tensorParallelSize,
    ).toBe(2);
    expect(
      parseServerConfig(["--model", "m"], { LORAFLEET_TENSOR_PARALLEL_SIZE: "4" })
        .tensorParallelSize,
    ).toBe(4);
    expect(() => parseServerConfig(["--model", "m", "--tensor-parallel-size", "0"], {})).toThrow(
      /--tensor-parallel-size \(LORAFLEET_TENSOR_PARALLEL_SIZE\)/,
    );
    expect(() => parseServerConfig(["--model", "m", "--tensor-parallel-size", "1.5"], {})).toThrow(
      ConfigError,
    );
  });

  it("stage threads and the profile window are unset unless given, and checked", () => {
    const unset = parseServerConfig(["--model", "m"], {});
    expect([unset.stageThreads, unset.profileSteps, unset.profileOut]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    const set = parseServerConfig(
      ["--model", "m", "--stage-threads", "8", "--profile-out", "/tmp/p"],
      { LORAFLEET_PROFILE_STEPS: "200:50" },
    );
    expect([set.stageThreads, set.profileSteps, set.profileOut]).toEqual([8, "200:50", "/tmp/p"]);
    expect(() => parseServerConfig(["--model", "m", "--stage-threads", "0"], {})).toThrow(
      /--stage-threads \(LORAFLEET_STAGE_THREADS\)/,
    );
    const grammar = parseServerConfig(
      ["--model", "m", "--grammar-threads", "2", "--tool-call-parser", "hermes"],
      { LORAFLEET_GRAMMAR_COMPILE_TIMEOUT_S: "0.5" },
    );
    expect([
      grammar.grammarThreads,
      grammar.grammarCompileTimeoutS,
      grammar.toolCallParser,
    ]).toEqual([2, 0.5, "hermes"]);
    expect(parseServerConfig(["--model", "m"], {}).toolCallParser).toBe("smollm2");
    expect(() => parseServerConfig(["--model", "m", "--tool-call-parser", "xml"], {})).toThrow(
      /--tool-call-parser \(LORAFLEET_TOOL_CALL_PARSER\)/,
    );
    for (const bad of ["5", "5:0", "a:b", "-1:2"]) {
      expect(() => parseServerConfig(["--model", "m", `--profile-steps=${bad}`], {})).toThrow(
        /--profile-steps \(LORAFLEET_PROFILE_STEPS\): must be FIRST:COUNT/,
      );
    }
  });
});

describe("ExecutorClient's executor flags", () => {
  it("refuses a count that is not a positive integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new ExecutorClient({ tensorParallelSize: bad })).toThrow(RangeError);
      expect(() => new ExecutorClient({ stageThreads: bad })).toThrow(
        /stageThreads must be an integer >= 1/,
      );
    }
    expect(() => new ExecutorClient({ grammarCompileTimeoutS: 0 })).toThrow(
      /grammarCompileTimeoutS must be > 0/,
    );
    expect(new ExecutorClient({ tensorParallelSize: 2 }).state).toBe("idle");
  });

  it("puts them on the executor's command line, not in its environment", async () => {
    // Stands in for the executor's Python: writes down its arguments and environment, exits.
    const launcher = join(dir, "python");
    const seen = join(dir, "seen");
    writeFileSync(launcher, `#!/bin/sh\n{ echo "$*"; env; } > "${seen}"\nexit 1\n`, {
      mode: 0o755,
    });
    const client = new ExecutorClient({
      pythonPath: launcher,
      socketPath: join(dir, "executor.sock"),
      tensorParallelSize: 2,
      stageThreads: 3,
      profileSteps: "5:2",
      profileOut: "/tmp/prof",
      grammarThreads: 6,
      grammarCompileTimeoutS: 2.5,
      logger: new RecordingLogger(),
    });
    const error = await rejection(client.init(tinyConfig()));
    expect(error).toBeInstanceOf(ExecutorUnavailable);
    const [args, ...env] = readFileSync(seen, "utf8").split("\n");
    expect(args).toBe(
      `-m lorafleet_executor --socket ${join(dir, "executor.sock")} --tensor-parallel-size 2` +
        " --stage-threads 3 --grammar-threads 6 --grammar-compile-timeout-s 2.5" +
        " --profile-steps 5:2 --profile-out /tmp/prof",
    );
    expect(env.filter((line) => /^LORAFLEET_(TENSOR|STAGE|PROFILE)/.test(line))).toEqual([]);
    await client.shutdown();
  });

  it("passes no flag that was not set: the executor's defaults apply", async () => {
    const launcher = join(dir, "python-bare");
    const seen = join(dir, "seen-bare");
    writeFileSync(launcher, `#!/bin/sh\necho "$*" > "${seen}"\nexit 1\n`, { mode: 0o755 });
    const client = new ExecutorClient({
      pythonPath: launcher,
      socketPath: join(dir, "bare.sock"),
      logger: new RecordingLogger(),
    });
    await rejection(client.init(tinyConfig()));
    expect(readFileSync(seen, "utf8").trim()).toBe(
      `-m lorafleet_executor --socket ${join(dir, "bare.sock")}`,
    );
    await client.shutdown();
  });
});
