import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BackendStartError, startBackend } from "./backend-server.ts";

// Stand-in server entries, real Node processes: one that answers /ready only after a
// delay (as the backend does once its executor is up), one that dies at start.
const slowReady = `
import { createServer } from "node:http";
import { parseArgs } from "node:util";
const { values } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" }, model: { type: "string" } } });
const up = Date.now() + 300;
createServer((req, res) => {
  const ready = req.url === "/ready" && Date.now() > up;
  res.writeHead(ready ? 200 : 503).end(values.model);
}).listen(Number(values.port), values.host);
`;
const dies = `console.error("cannot open model directory"); process.exit(3);`;

function entry(source: string): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "backend-"));
  const file = join(dir, "entry.mjs");
  writeFileSync(file, source);
  return { dir, file };
}

describe("startBackend", () => {
  it("passes flags and a free port, waits for /ready, stops the process", async () => {
    const { dir, file } = entry(slowReady);
    const started = Date.now();
    const server = await startBackend({
      entry: file,
      args: ["--model", "tiny"],
      cwd: dir,
      log: join(dir, "log"),
      readyTimeoutS: 10,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    const response = await fetch(`${server.url}/ready`);
    expect(await response.text()).toBe("tiny");
    await server.stop();
    await expect(fetch(`${server.url}/ready`)).rejects.toThrow();
  });

  it("reports a server that exits before it is ready, with its log", async () => {
    const { dir, file } = entry(dies);
    const start = startBackend({
      entry: file,
      args: [],
      cwd: dir,
      log: join(dir, "log"),
      readyTimeoutS: 10,
    });
    await expect(start).rejects.toThrow(BackendStartError);
    await expect(start).rejects.toThrow(/exited with code 3[\s\S]*cannot open model directory/);
  });
});
