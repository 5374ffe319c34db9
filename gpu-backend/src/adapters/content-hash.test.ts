import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { adapterContentSha256 } from "./content-hash.ts";

const root = mkdtempSync(join(tmpdir(), "lorafleet-content-hash-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function adapterDir(name: string, config: string, weights: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "adapter_config.json"), config);
  writeFileSync(join(dir, "adapter_model.safetensors"), weights);
  return dir;
}

describe("adapterContentSha256", () => {
  it("follows the adapter's config and weights, not its name or place", async () => {
    const a = await adapterContentSha256(adapterDir("a", '{"r":8}', "weights-1"));
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(await adapterContentSha256(adapterDir("a-copy", '{"r":8}', "weights-1"))).toBe(a);
    expect(await adapterContentSha256(adapterDir("new-weights", '{"r":8}', "weights-2"))).not.toBe(
      a,
    );
    expect(await adapterContentSha256(adapterDir("new-scale", '{"r":16}', "weights-1"))).not.toBe(
      a,
    );
  });
});
