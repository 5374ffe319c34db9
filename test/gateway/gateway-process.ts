// Starts the gateway Worker as a user would run it locally: `wrangler dev` (workerd with
// local D1/KV/R2/Durable Objects) on free ports, persisted in a fresh temp folder that
// gets the real migrations first, with its secrets passed as --var (these win over a
// .dev.vars that `npm start` may have written). Stops it by its own pid.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { backendCredential } from "../../gateway/src/auth/backend-credential.ts";
import { repoRoot } from "../backend/backend-process.ts";

const wrangler = join(repoRoot, "node_modules/.bin/wrangler");
const env = {
  ...process.env,
  PATH: `${join(repoRoot, "node_modules/.bin")}:${process.env.PATH}`,
  // no telemetry prompt, no interactive key bindings
  CI: "1",
  WRANGLER_SEND_METRICS: "false",
};

export interface Gateway {
  url: string;
  adminToken: string;
  /** its URL_SIGNING_KEY: lets a test sign an adapter URL the way the gateway does */
  urlSigningKey: string;
  /** everything wrangler printed so far */
  logs: () => string;
  stop: () => Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no free port")),
      );
    });
  });
}

/** The origin the gateway listens on and writes into its signed adapter URLs. */
export const gatewayOrigin = (port: number) => `http://127.0.0.1:${port}`;

/**
 * The secret the gateway answers when a backend is first registered as `backendId` (its
 * credential version 1, derived from the gateway's BACKEND_SECRET `masterSecret`): start
 * that backend with it to start it alongside the gateway, before registering it.
 */
export const backendSecretFor = (masterSecret: string, backendId: string) =>
  backendCredential(masterSecret, backendId, 1);

/**
 * `masterSecret` is the gateway's BACKEND_SECRET: each backend must be started with its own
 * secret, backendSecretFor(masterSecret, its id), and with `--adapter-url-allow` naming the
 * gateway's origin (`gatewayOrigin(port)`): pick the port first with freePort() when the
 * backends start alongside.
 */
export async function startGateway(masterSecret: string, port?: number): Promise<Gateway> {
  const state = mkdtempSync(join(tmpdir(), "lorafleet-gateway-e2e-"));
  const migrate = spawnSync(
    wrangler,
    ["d1", "migrations", "apply", "lorafleet", "--local", "--persist-to", state],
    { cwd: repoRoot, env, encoding: "utf8" },
  );
  if (migrate.status !== 0) {
    rmSync(state, { recursive: true, force: true });
    throw new Error(`D1 migrations failed:\n${migrate.stdout}${migrate.stderr}`);
  }
  const adminToken = randomBytes(16).toString("hex");
  const urlSigningKey = randomBytes(16).toString("hex");
  const vars = {
    ADMIN_TOKEN: adminToken,
    URL_SIGNING_KEY: urlSigningKey,
    BACKEND_SECRET: masterSecret,
  };
  const listenPort = port ?? (await freePort());
  const child = spawn(
    wrangler,
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      String(listenPort),
      "--inspector-port",
      String(await freePort()),
      "--persist-to",
      state,
      "--show-interactive-dev-session=false",
      ...Object.entries(vars).flatMap(([name, value]) => ["--var", `${name}:${value}`]),
    ],
    { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout?.on("data", (chunk) => {
    output += chunk;
  });
  child.stderr?.on("data", (chunk) => {
    output += chunk;
  });
  const url = gatewayOrigin(listenPort);
  const stop = async () => {
    await stopProcess(child);
    rmSync(state, { recursive: true, force: true });
  };
  try {
    await waitHealthy(url, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, adminToken, urlSigningKey, logs: () => output, stop };
}

async function waitHealthy(url: string, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${logs()}`);
    const response = await fetch(`${url}/healthz`).catch(() => null);
    if (response?.ok) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`wrangler dev did not answer ${url}/healthz within 90 s:\n${logs()}`);
}

function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}
