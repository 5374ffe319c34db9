// Starts the real backend (gpu-backend/src/server/main.ts) on a free port with the tiny
// fixture model on CPU, waits until /ready, and stops it by its own pid.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const repoRoot = join(import.meta.dirname, "../..");
export const fixturesDir = join(repoRoot, ".cache/fixtures");
export const tinyModel = join(fixturesDir, "tiny-llama");
export const haveFixtures = existsSync(join(tinyModel, "config.json"));

export interface Backend {
  url: string;
  process: ChildProcess;
  /** everything the server logged so far */
  logs: () => string;
  /** pids of the server's child processes (the executor) */
  childPids: () => number[];
  stop: () => Promise<void>;
}

export async function startBackend(
  extraArgs: string[] = [],
  env: Record<string, string> = {},
): Promise<Backend> {
  const child = spawn(
    join(repoRoot, "node_modules/.bin/node"),
    [
      join(repoRoot, "gpu-backend/src/server/main.ts"),
      "--model",
      tinyModel,
      "--served-model-name",
      "tiny-llama",
      "--adapter-dir",
      join(fixturesDir, "adapters"),
      // URL downloads stay out of the fixtures (they would pile up there run after run).
      "--adapter-cache-dir",
      join(repoRoot, ".cache/test-adapter-downloads"),
      "--device",
      "cpu",
      "--port",
      "0",
      "--lora-backend",
      "torch",
      "--cuda-graphs",
      "false",
      // On CPU a pool sized by memory fraction would take most of the host's RAM.
      "--num-pages",
      "16384",
      ...extraArgs,
    ],
    {
      cwd: repoRoot,
      env: { ...process.env, LORAFLEET_LOG_LEVEL: "info", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`backend did not start:\n${output}`)), 120_000);
    const check = () => {
      const match = /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout?.on("data", check);
    child.stderr?.on("data", check);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`backend exited with ${code}:\n${output}`));
    });
  });
  await waitReady(url);
  return {
    url,
    process: child,
    logs: () => output,
    childPids: () => childPidsOf(child.pid ?? -1),
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}

async function waitReady(url: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const response = await fetch(`${url}/ready`).catch(() => null);
    if (response?.ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`${url}/ready never answered 200`);
}

function childPidsOf(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // the parent pid is the 2nd field after the parenthesised command name
      const parent = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (parent === pid) children.push(Number(entry));
    } catch {
      // the process went away while we looked
    }
  }
  return children;
}
