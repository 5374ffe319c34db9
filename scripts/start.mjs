// `npm start`: the whole system on the embedded default, on this machine's CPU (or its
// GPU when there is one): the GPU backend serving SmolLM2-135M-Instruct and the fixture
// adapters, behind the gateway Worker (`wrangler dev`, local D1/KV/R2/DO) with a demo
// tenant and API key. Prints where everything listens and a curl line that works.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cacheDir, fixturesDir, pythonPath, root, SetupError, setup } from "./setup.mjs";

const binDir = join(root, "node_modules", ".bin");
const backendPort = Number(process.env.LORAFLEET_BACKEND_PORT ?? 8000);
const gatewayPort = Number(process.env.LORAFLEET_GATEWAY_PORT ?? 8787);
const children = [];

function log(message) {
  process.stderr.write(`[start] ${message}\n`);
}

/** Dev secrets, made once per checkout and kept in the git-ignored cache. */
function devSecrets() {
  const path = join(cacheDir, "dev-secrets.json");
  if (existsSync(path)) return JSON.parse(readFileSync(path, "utf8"));
  const secrets = {
    backendSecret: randomBytes(24).toString("hex"),
    adminToken: randomBytes(24).toString("hex"),
    signingKey: randomBytes(32).toString("hex"),
  };
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(path, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return secrets;
}

function launch(name, command, args, env = {}) {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, PATH: `${binDir}:${process.env.PATH}`, ...env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  child.on("exit", (code, signal) => {
    if (stopping) return;
    log(`${name} exited (${signal ?? code}); stopping`);
    shutdown(code ?? 1);
  });
  children.push(child);
  return child;
}

async function waitFor(url, what, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new SetupError(`${what} did not answer ${url} within ${timeoutMs / 1000} s`);
}

let stopping = false;
function shutdown(code) {
  if (stopping) return;
  stopping = true;
  for (const child of children) child.kill("SIGTERM");
  setTimeout(() => process.exit(code), 2000).unref();
}

async function main() {
  setup();
  const secrets = devSecrets();
  // The gateway first: registering the backend answers the backend's own secret.
  const gateway = await startGateway(secrets);
  const model = join(fixturesDir, "smollm2-135m-instruct");
  log(`backend: ${model} on http://127.0.0.1:${backendPort}`);
  launch("backend", join(binDir, "node"), [
    "gpu-backend/src/server/main.ts",
    "--model",
    model,
    "--served-model-name",
    "smollm2-135m-instruct",
    "--adapter-dir",
    join(fixturesDir, "adapters"),
    "--adapter-cache-dir",
    join(cacheDir, "adapter-downloads"),
    "--port",
    String(backendPort),
    "--python",
    pythonPath(),
    "--backend-secret",
    gateway?.backendSecret ?? secrets.backendSecret,
    // The gateway's signed adapter URLs carry the origin a client used to reach it.
    "--adapter-url-allow",
    `http://127.0.0.1:${gatewayPort},http://localhost:${gatewayPort}`,
    ...cpuPoolArgs(),
  ]);
  await waitFor(`http://127.0.0.1:${backendPort}/ready`, "the backend", 300_000);
  printUsage(gateway);
}

/**
 * On the CPU a pool sized by memory fraction would take most of the host's free RAM:
 * give it a fixed 16384 pages (a few hundred MB for SmolLM2) unless the user chose.
 * setup() sets LORAFLEET_PYTHON only where a CUDA torch is installed.
 */
function cpuPoolArgs() {
  if (process.env.LORAFLEET_PYTHON || process.env.LORAFLEET_NUM_PAGES) return [];
  return ["--num-pages", "16384"];
}

/** Brings up `wrangler dev` with the demo tenant seeded; see gateway/scripts/dev-seed.mjs. */
async function startGateway(secrets) {
  const seed = join(root, "gateway", "scripts", "dev-seed.mjs");
  if (!existsSync(seed)) return null;
  const { seedDevGateway } = await import(seed);
  return seedDevGateway({
    launch,
    waitFor,
    log,
    port: gatewayPort,
    backendUrl: `http://127.0.0.1:${backendPort}`,
    baseModel: "smollm2-135m-instruct",
    modelDir: join(fixturesDir, "smollm2-135m-instruct"),
    secrets,
  });
}

function printUsage(gateway) {
  const lines = [""];
  if (gateway) {
    lines.push(
      `lorafleet is up. Gateway: http://127.0.0.1:${gatewayPort}  (console: http://127.0.0.1:${gatewayPort}/)`,
      `Demo tenant API key: ${gateway.apiKey}`,
      "",
      `curl http://127.0.0.1:${gatewayPort}/v1/chat/completions \\`,
      `  -H "authorization: Bearer ${gateway.apiKey}" -H "content-type: application/json" \\`,
    );
  } else {
    lines.push(
      `lorafleet backend is up: http://127.0.0.1:${backendPort}`,
      "",
      `curl http://127.0.0.1:${backendPort}/v1/chat/completions -H "content-type: application/json" \\`,
    );
  }
  lines.push(
    `  -d '{"model":"smollm2-135m-instruct","temperature":0,"messages":[{"role":"user","content":"What is the capital of France?"}]}'`,
    "",
    "Adapters: put `smollm2-r8` in `model` to chat with the fixture adapter. Ctrl-C stops everything.",
  );
  if (gateway) {
    lines.push(
      "Upload your own PEFT adapter with the same key (then use its name as `model`):",
      `  curl http://127.0.0.1:${gatewayPort}/v1/adapters -H "authorization: Bearer ${gateway.apiKey}" \\`,
      "    -F name=my-adapter -F files=@adapter_config.json -F files=@adapter_model.safetensors",
      'Admin API (gateway/README.md): its token is "adminToken" in .cache/dev-secrets.json.',
    );
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));
main().catch((error) => {
  log(`error: ${error.message}`);
  shutdown(1);
});
