// A model the executor cannot serve exactly is refused when the backend starts: the
// backend exits 1 and its last line names the config field or the tensor (issue #20,
// strict model loading), with no stack trace to read through.
import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { haveFixtures, startBackend, tinyModel } from "./backend-process.ts";

/** The tiny fixture with its config.json changed by `edit`; the weights linked, not copied. */
function tinyModelWith(edit: (config: Record<string, unknown>) => void): string {
  const dir = mkdtempSync(join(tmpdir(), "lorafleet-refused-"));
  for (const file of ["generation_config.json", "tokenizer.json", "tokenizer_config.json"]) {
    copyFileSync(join(tinyModel, file), join(dir, file));
  }
  symlinkSync(join(tinyModel, "model.safetensors"), join(dir, "model.safetensors"));
  const config = JSON.parse(readFileSync(join(tinyModel, "config.json"), "utf8"));
  edit(config);
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

async function startFailure(model: string): Promise<string> {
  const error = await startBackend(["--model", model]).then(
    async (backend) => {
      await backend.stop();
      throw new Error("the backend started");
    },
    (failure: Error) => failure,
  );
  return error.message;
}

describe.skipIf(!haveFixtures)("a model the executor cannot serve", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  it("is refused at start, naming the config field and its value", async () => {
    const model = tinyModelWith((config) => {
      config.hidden_act = "gelu_pytorch_tanh";
    });
    dirs.push(model);
    const output = await startFailure(model);
    expect(output).toMatch(/^backend exited with 1:/);
    expect(output).toContain(
      "lorafleet backend failed to start: the executor refused init: bad_message: " +
        "hidden_act gelu_pytorch_tanh is not supported (silu)\n",
    );
    expect(output).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("is refused at start, naming a tensor the config says the model does not have", async () => {
    // attention_bias true: the executor looks for q/k/v/o biases the checkpoint lacks
    const model = tinyModelWith((config) => {
      config.attention_bias = true;
    });
    dirs.push(model);
    expect(await startFailure(model)).toContain(
      "the executor refused init: bad_message: weight model.layers.0.self_attn.q_proj.bias is missing",
    );
  });
});
