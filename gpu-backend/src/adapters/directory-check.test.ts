// Registration's check of a PEFT directory against api/fixtures/adapter-cases.json: the
// files written to disk (or left out, or a pickle beside them), the verdict the shared
// rules give in memory and the executor's staging gives (test_adapter_rules.py).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AdapterRuleError } from "@lorafleet/api";
import { afterAll, describe, expect, it } from "vitest";
import { adapterCases } from "../../../api/fixtures/adapter-cases.ts";
import { checkAdapterDirectory } from "./directory-check.ts";

const root = mkdtempSync(join(tmpdir(), "lorafleet-directory-check-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("checkAdapterDirectory", () => {
  it.each(adapterCases.cases.map((c, i) => [c.name, c, i] as const))("%s", async (_, c, i) => {
    const dir = join(root, String(i));
    mkdirSync(dir);
    if (c.config !== null)
      writeFileSync(join(dir, "adapter_config.json"), Buffer.from(c.config, "base64"));
    if (c.weights !== null) {
      writeFileSync(join(dir, "adapter_model.safetensors"), Buffer.from(c.weights, "base64"));
    }
    if (c.pickle) writeFileSync(join(dir, "adapter_model.bin"), "not really a pickle");
    const verdict = await checkAdapterDirectory(dir, adapterCases.base).then(
      (config) => ({ rank: config.rank, scale: config.scale, targets: config.targets }),
      (error: unknown) => {
        if (!(error instanceof AdapterRuleError)) throw error;
        return { code: error.code, message: error.message };
      },
    );
    expect(verdict).toEqual(c.expect);
  });

  it("never reads a FIFO or a directory in a file's place: the file is missing", async () => {
    const dir = join(root, "fifo");
    mkdirSync(dir);
    execFileSync("mkfifo", [join(dir, "adapter_config.json")]);
    await expect(checkAdapterDirectory(dir, adapterCases.base)).rejects.toThrow(
      "adapter_config.json is missing",
    );
    rmSync(join(dir, "adapter_config.json"));
    mkdirSync(join(dir, "adapter_config.json"));
    await expect(checkAdapterDirectory(dir, adapterCases.base)).rejects.toThrow(
      "adapter_config.json is missing",
    );
  });
});
