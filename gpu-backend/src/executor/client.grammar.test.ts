// compile_grammar / drop_grammar through the real executor (tiny model): answered by id,
// refusals as ExecutorRequestError with their code, a compile past the bound refused as
// grammar_too_complex while the executor keeps serving.
import { describe, expect, it } from "vitest";
import { ExecutorClient } from "./client.ts";
import { ExecutorRequestError } from "./errors.ts";
import { HAVE_TINY, RecordingLogger, rejection, TEST_PYTHON, tinyConfig } from "./test-fixtures.ts";

describe.skipIf(!HAVE_TINY)("grammars through the executor client", () => {
  it("compiles, refuses by code, and bounds the compile time", async () => {
    const client = new ExecutorClient({
      pythonPath: TEST_PYTHON,
      logger: new RecordingLogger(),
      // Any compile that is not a cache hit takes longer (the first builds the tokenizer).
      grammarCompileTimeoutS: 0.001,
    });
    try {
      await client.init(tinyConfig());
      const slow = await rejection(client.compileGrammar(1, "regex", "[a-z]{3}"));
      expect(slow).toBeInstanceOf(ExecutorRequestError);
      expect([(slow as ExecutorRequestError).code, (slow as ExecutorRequestError).reason]).toEqual([
        "grammar_too_complex",
        "compiling the grammar took longer than 0.001 s",
      ]);
      // The compile went on and was kept: the same grammar again is a hit, at once.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(await client.compileGrammar(2, "regex", "[a-z]{3}")).toEqual({
        grammarId: 2,
        compileMs: 0,
        cached: true,
      });
      await client.dropGrammar(2);
      expect(client.state).toBe("ready");
    } finally {
      await client.shutdown();
    }
  });
});
