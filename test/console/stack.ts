// The whole system the console runs against: the real backend (tiny-llama on CPU,
// Python executor) behind `wrangler dev` (local D1/KV/R2/DO in a fresh folder, the
// real migrations applied, the console built into console/dist and served as assets),
// seeded through the admin API with a base model, the backend and two tenants.
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Backend, repoRoot, startBackend, tinyModel } from "../backend/backend-process.ts";

const bin = (name: string) => join(repoRoot, "node_modules/.bin", name);

/** What the tests get: where the gateway listens and the secrets of two tenants. */
export type StackInfo = {
  url: string;
  adminToken: string;
  baseModel: string;
  /** tenant "acme": a key with inference + adapters:write */
  acme: { id: string; key: string };
  /** tenant "globex", to check that acme's things stay invisible to it */
  globex: { id: string; key: string };
};

export type Stack = StackInfo & { stop: () => Promise<void> };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolve(address.port)
          : reject(new Error("no port")),
      );
    });
  });
}

function stopProcess(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

async function waitFor(url: string, child: ChildProcess, logs: () => string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${logs()}`);
    const response = await fetch(url).catch(() => null);
    if (response?.ok) return;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`wrangler dev did not answer ${url} within 90 s:\n${logs()}`);
}

async function admin<T>(url: string, token: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (!response.ok)
    throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

export async function startStack(): Promise<Stack> {
  const build = spawnSync(bin("node"), [join(repoRoot, "console/build.mjs")], { encoding: "utf8" });
  if (build.status !== 0) throw new Error(`console build failed:\n${build.stderr}`);

  const backendSecret = randomBytes(16).toString("hex");
  const adminToken = randomBytes(16).toString("hex");
  const backend: Backend = await startBackend(["--backend-secret", backendSecret]);

  const state = mkdtempSync(join(tmpdir(), "lorafleet-console-"));
  const env = {
    ...process.env,
    PATH: `${join(repoRoot, "node_modules/.bin")}:${process.env.PATH}`,
    CI: "1",
    WRANGLER_SEND_METRICS: "false",
  };
  const migrate = spawnSync(
    bin("wrangler"),
    ["d1", "migrations", "apply", "lorafleet", "--local", "--persist-to", state],
    { cwd: repoRoot, env, encoding: "utf8" },
  );
  if (migrate.status !== 0)
    throw new Error(`migrations failed:\n${migrate.stdout}${migrate.stderr}`);

  const port = await freePort();
  const vars = {
    ADMIN_TOKEN: adminToken,
    URL_SIGNING_KEY: randomBytes(16).toString("hex"),
    BACKEND_SECRET: backendSecret,
  };
  const wrangler = spawn(
    bin("wrangler"),
    [
      "dev",
      "--local",
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--inspector-port",
      String(await freePort()),
      "--persist-to",
      state,
      "--show-interactive-dev-session=false",
      "--log-level",
      "warn",
      ...Object.entries(vars).flatMap(([k, v]) => ["--var", `${k}:${v}`]),
    ],
    { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  wrangler.stdout?.on("data", (c) => {
    output += c;
  });
  wrangler.stderr?.on("data", (c) => {
    output += c;
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    await stopProcess(wrangler);
    await backend.stop();
    rmSync(state, { recursive: true, force: true });
  };
  try {
    await waitFor(`${url}/healthz`, wrangler, () => output);
    const config = JSON.parse(readFileSync(join(tinyModel, "config.json"), "utf8"));
    const baseModel = "tiny-llama";
    await admin(url, adminToken, "PUT", "/admin/base-models", {
      ...config,
      name: baseModel,
      max_lora_rank: 64,
    });
    await admin(url, adminToken, "POST", "/admin/backends", {
      id: "cpu-0",
      url: backend.url,
      base_model: baseModel,
      capacity: 8,
    });
    const tenant = async (name: string) => {
      const { id } = await admin<{ id: string }>(url, adminToken, "POST", "/admin/tenants", {
        name,
      });
      const { key } = await admin<{ key: string }>(
        url,
        adminToken,
        "POST",
        `/admin/tenants/${id}/keys`,
        { scopes: ["inference", "adapters:write"], name: "seed" },
      );
      return { id, key };
    };
    return {
      url,
      adminToken,
      baseModel,
      acme: await tenant("acme"),
      globex: await tenant("globex"),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
