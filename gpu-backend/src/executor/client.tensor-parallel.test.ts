// --tensor-parallel-size from the backend's config to the executor's environment; the
// executor side (rank 0 starting its ranks from LORAFLEET_TENSOR_PARALLEL_SIZE) is
// tested in executor/tests/test_tensor_parallel_server.py.
import { describe, expect, it } from "vitest";
import { ConfigError, parseServerConfig } from "../server/config.ts";
import { ExecutorClient } from "./client.ts";

describe("tensor parallel size", () => {
  it("is a positive integer flag (and env variable), 1 by default", () => {
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

  it("is refused by the client unless a positive integer", () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new ExecutorClient({ tensorParallelSize: bad })).toThrow(RangeError);
    }
    expect(new ExecutorClient({ tensorParallelSize: 2 }).state).toBe("idle");
  });
});
