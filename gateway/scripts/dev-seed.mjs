// The gateway half of `npm start` (scripts/start.mjs calls seedDevGateway): `wrangler dev`
// with local D1/KV/R2/DO persisted under .wrangler/state, the real migrations applied,
// and, through the admin and tenant APIs, a demo tenant with an API key, the local
// backend registered (its secret returned, for the backend started after this) and the
// fixture adapter uploaded. Every step is idempotent, so a restart keeps the same key
// and backend secret; a revoked key or wiped state gets a new one.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const binDir = join(root, "node_modules", ".bin");
const demoStatePath = join(root, ".cache", "dev-gateway.json");
// wrangler would otherwise ask about telemetry and open its interactive key bindings.
const wranglerEnv = { WRANGLER_SEND_METRICS: "false", CI: "1" };

const demoTenant = "demo";
const demoAdapter = "smollm2-r8";
const backendId = "local-0";

/** A failed seeding step, named after what it was doing. */
export class DevSeedError extends Error {
  name = "DevSeedError";
}

/**
 * `backendSecret` is the secret the gateway derived for the local backend: start it with
 * `--backend-secret <backendSecret>`.
 *
 * @example
 * const { apiKey, backendSecret } = await seedDevGateway({ launch, waitFor, log, port: 8787,
 *   backendUrl: "http://127.0.0.1:8000", baseModel: "smollm2-135m-instruct", secrets });
 */
export async function seedDevGateway({
  launch,
  waitFor,
  log,
  port,
  backendUrl,
  baseModel,
  secrets,
  modelDir = join(root, ".cache", "fixtures", baseModel),
  adapterDir = join(root, ".cache", "fixtures", "adapters", demoAdapter),
}) {
  writeDevVars(secrets, log);
  buildConsoleIfMissing(log);
  run(
    join(binDir, "wrangler"),
    ["d1", "migrations", "apply", "lorafleet", "--local"],
    "D1 migrations (local)",
    log,
  );
  const url = `http://127.0.0.1:${port}`;
  log(`gateway: wrangler dev on ${url}`);
  launch(
    "gateway",
    join(binDir, "wrangler"),
    ["dev", "--ip", "127.0.0.1", "--port", String(port), "--show-interactive-dev-session=false"],
    wranglerEnv,
  );
  await waitFor(`${url}/healthz`, "the gateway", 120_000);

  const admin = apiClient(url, secrets.adminToken);
  const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
  await admin("PUT", "/admin/base-models", { ...config, name: baseModel, max_lora_rank: 64 });
  // The backend is started after this, with the secret the gateway answers for it.
  const { backend_secret: backendSecret } = await admin("POST", "/admin/backends", {
    id: backendId,
    url: backendUrl,
    base_model: baseModel,
    capacity: 32,
  });
  const tenantId = await ensureTenant(admin);
  const apiKey = await ensureKey(url, admin, tenantId, log);
  await ensureAdapter(url, apiKey, adapterDir, log);
  log(
    `gateway seeded: tenant ${demoTenant} (${tenantId}), backend ${backendId}, adapter ${demoAdapter}`,
  );
  return { apiKey, backendSecret };
}

/** Writes .dev.vars (git-ignored; wrangler dev reads it) with the secrets of this checkout. */
function writeDevVars(secrets, log) {
  const path = join(root, ".dev.vars");
  const text = [
    "# Written by `npm start` (gateway/scripts/dev-seed.mjs) from .cache/dev-secrets.json.",
    `ADMIN_TOKEN=${secrets.adminToken}`,
    `URL_SIGNING_KEY=${secrets.signingKey}`,
    `BACKEND_SECRET=${secrets.backendSecret}`,
    "",
  ].join("\n");
  if (existsSync(path) && readFileSync(path, "utf8") === text) return;
  writeFileSync(path, text, { mode: 0o600 });
  log("gateway: wrote .dev.vars");
}

/** wrangler.toml serves console/dist as assets; a fresh clone has not built it yet. */
function buildConsoleIfMissing(log) {
  const build = join(root, "console", "build.mjs");
  if (!existsSync(build) || existsSync(join(root, "console", "dist", "index.html"))) return;
  run(join(binDir, "node"), [build], "console build", log);
}

function run(command, args, what, log) {
  log(`${what}: ${[command.replace(`${binDir}/`, ""), ...args].join(" ")}`);
  const result = spawnSync(command, args, {
    cwd: root,
    env: { ...process.env, PATH: `${binDir}:${process.env.PATH}`, ...wranglerEnv },
    encoding: "utf8",
  });
  if (result.error || result.status !== 0) {
    const reason = result.error?.message ?? `exit code ${result.status}`;
    throw new DevSeedError(
      `${what} failed (${reason}):\n${result.stdout ?? ""}${result.stderr ?? ""}`,
    );
  }
}

/**
 * `call(method, path, body?, {allow})`: JSON in and out with a bearer token. Any status
 * but 2xx and those in `allow` is an error; an allowed one answers null.
 */
function apiClient(url, token) {
  return async (method, path, body, { allow = [] } = {}) => {
    const response = await fetch(`${url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (response.ok) return JSON.parse(text);
    if (allow.includes(response.status)) return null;
    throw new DevSeedError(`${method} ${path} answered ${response.status}: ${text}`);
  };
}

async function ensureTenant(admin) {
  const tenants = await admin("GET", "/admin/tenants");
  const existing = tenants.data.find((t) => t.name === demoTenant);
  if (existing) {
    if (existing.status !== "active") await admin("POST", `/admin/tenants/${existing.id}/resume`);
    return existing.id;
  }
  return (await admin("POST", "/admin/tenants", { name: demoTenant })).id;
}

/** The stored key if the gateway still accepts it for this tenant, else a new one (stored). */
async function ensureKey(url, admin, tenantId, log) {
  const stored = existsSync(demoStatePath) ? JSON.parse(readFileSync(demoStatePath, "utf8")) : null;
  if (stored?.tenantId === tenantId && typeof stored.apiKey === "string") {
    const response = await fetch(`${url}/v1/models`, {
      headers: { authorization: `Bearer ${stored.apiKey}` },
    });
    if (response.ok) return stored.apiKey;
    log(`gateway: the stored demo key is refused (${response.status}); issuing a new one`);
  }
  const issued = await admin("POST", `/admin/tenants/${tenantId}/keys`, {
    scopes: ["inference", "adapters:write"],
    name: "npm start demo",
  });
  mkdirSync(dirname(demoStatePath), { recursive: true });
  writeFileSync(
    demoStatePath,
    `${JSON.stringify({ tenantId, keyId: issued.id, apiKey: issued.key }, null, 2)}\n`,
    { mode: 0o600 },
  );
  return issued.key;
}

/** Uploads the fixture adapter unless a ready copy with the same weights is there. */
async function ensureAdapter(url, apiKey, dir, log) {
  const tenant = apiClient(url, apiKey);
  const weights = readFileSync(join(dir, "adapter_model.safetensors"));
  const sha256 = await sha256Hex(weights);
  const current = await tenant("GET", `/v1/adapters/${demoAdapter}`, undefined, { allow: [404] });
  if (current?.status === "ready" && current.sha256 === sha256) return;
  if (current !== null) {
    log(`gateway: replacing adapter ${demoAdapter} (${current.status})`);
    await tenant("DELETE", `/v1/adapters/${demoAdapter}`);
  }
  const form = new FormData();
  form.append("name", demoAdapter);
  form.append(
    "files",
    new Blob([readFileSync(join(dir, "adapter_config.json"))]),
    "adapter_config.json",
  );
  form.append("files", new Blob([weights]), "adapter_model.safetensors");
  const response = await fetch(`${url}/v1/adapters`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}` },
    body: form,
  });
  if (!response.ok) {
    throw new DevSeedError(
      `uploading ${demoAdapter} answered ${response.status}: ${await response.text()}`,
    );
  }
  log(`gateway: uploaded adapter ${demoAdapter}`);
}

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Buffer.from(digest).toString("hex");
}
