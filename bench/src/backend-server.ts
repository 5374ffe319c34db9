/**
 * Starts the real lorafleet backend (gpu-backend/src/server/main.ts, or a bundle of
 * it) as a child process on a free port, waits until `/ready` answers 200 (the executor is up), and
 * stops it. Its output goes to a log file, so a failed start can be diagnosed.
 *
 *   const server = await startBackend({ entry, args: ["--model", dir], log, readyTimeoutS: 120 });
 *   ... fetch(`${server.url}/v1/completions`) ...
 *   await server.stop();
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export class BackendStartError extends Error {
  override name = "BackendStartError";
}

export interface BackendOptions {
  /** the server's entry file, run with this Node */
  entry: string;
  /** server flags; `--port` and `--host` are added here */
  args: string[];
  cwd: string;
  /** file that receives the server's stdout and stderr */
  log: string;
  readyTimeoutS: number;
  env?: NodeJS.ProcessEnv;
}

export interface Backend {
  url: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return address.port;
}

export async function startBackend(options: BackendOptions): Promise<Backend> {
  const port = await freePort();
  const args = [...options.args, "--host", "127.0.0.1", "--port", String(port)];
  const logFd = openSync(options.log, "w");
  const child = spawn(process.execPath, [options.entry, ...args], {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ["ignore", logFd, logFd],
  });
  closeSync(logFd);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + options.readyTimeoutS * 1000;
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  while (Date.now() < deadline && exitCode === undefined) {
    if (await isReady(url)) return { url, stop: () => stopChild(child, exited) };
    await sleep(250);
  }
  await stopChild(child, exited);
  const tail = readFileSync(options.log, "utf8").split("\n").slice(-15).join("\n");
  const why =
    exitCode === undefined
      ? `not ready within ${options.readyTimeoutS} s`
      : `exited with code ${exitCode} before it was ready`;
  throw new BackendStartError(`backend ${why}; last lines of ${options.log}:\n${tail}`);
}

async function isReady(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(2000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  await exited;
  clearTimeout(timer);
}
