import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdapterDirectory } from "./adapter-directory.ts";

const weights = new TextEncoder().encode("not really safetensors, but bytes with a digest");
const sha256 = createHash("sha256").update(weights).digest("hex");
const config = JSON.stringify({ peft_type: "LORA", r: 4 });

describe("AdapterDirectory", () => {
  let server: Server;
  let base: string;
  let downloads = 0;

  beforeAll(async () => {
    server = createServer((req, res) => {
      downloads++;
      if (req.url === "/w") res.end(weights);
      else if (req.url === "/c") res.end(config);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.close();
  });

  it("finds only safe names that hold an adapter_config.json", async () => {
    const directory = new AdapterDirectory(
      join(import.meta.dirname, "../../../.cache/fixtures/adapters"),
    );
    expect(await directory.find("../adapters")).toBeNull();
    expect(await directory.find("no-such-adapter")).toBeNull();
  });

  it("downloads once, checks the sha256, and reuses the verified copy", async () => {
    const directory = new AdapterDirectory(mkdtempSync(join(tmpdir(), "adapters-")));
    const adapter = {
      id: "a1",
      name: "mine",
      sha256,
      configUrl: `${base}/c`,
      weightsUrl: `${base}/w`,
    };
    const path = await directory.fetch(adapter);
    expect(readFileSync(join(path, "adapter_config.json"), "utf8")).toBe(config);
    const before = downloads;
    expect(await directory.fetch(adapter)).toBe(path);
    expect(downloads).toBe(before);
  });

  it("refuses weights whose sha256 differs, keeping nothing", async () => {
    const root = mkdtempSync(join(tmpdir(), "adapters-"));
    const directory = new AdapterDirectory(root);
    const adapter = {
      id: "a2",
      name: "x",
      sha256: "0".repeat(64),
      configUrl: `${base}/c`,
      weightsUrl: `${base}/w`,
    };
    await expect(directory.fetch(adapter)).rejects.toThrow(/sha256/);
    await expect(directory.fetch({ ...adapter, weightsUrl: `${base}/missing` })).rejects.toThrow(
      /HTTP 404/,
    );
    expect(await directory.find("a2")).toBeNull();
  });
});
