/**
 * Starts the gateway Worker (bench/gateway/worker/counting-entry.ts: the real entry with
 * counted bindings) with local D1/KV/R2/Durable Objects/Queues, migrations applied, and
 * seeds it through its admin API: a base model served by the stub backend, a tenant
 * without limits and one with requests and tokens per minute.
 * - `workerd`: workerd directly: a socket of workerd bound to the gateway Worker itself
 *   (Miniflare's `unsafeDirectSockets`), nothing in front: the product's figure.
 * - `miniflare`: Miniflare's own server: the same workerd, entered through Miniflare's
 *   entry worker (a routing hop in JavaScript) as `mf.ready` serves it.
 * - `wrangler-dev`: `wrangler dev`, as `npm start` runs it (its proxy worker in front).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { build } from "esbuild";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { unstable_getMiniflareWorkerOptions, unstable_splitSqlQuery } from "wrangler";

export type Mode = "workerd" | "miniflare" | "wrangler-dev";

export const root = join(import.meta.dirname, "..", "..");
const wranglerBin = join(root, "node_modules", ".bin", "wrangler");
const entry = join(import.meta.dirname, "worker", "counting-entry.ts");

const secrets = {
  ADMIN_TOKEN: "bench-admin-token-0123456789",
  URL_SIGNING_KEY: "bench-signing-key-0123456789",
  BACKEND_SECRET: "bench-backend-secret-0123456789",
};

/** What the benchmark calls: the gateway's URL, the two tenants' keys, the model, how to stop it. */
export type Gateway = {
  mode: Mode;
  url: string;
  model: string;
  keys: { unlimited: string; limited: string };
  /** Process ids whose CPU time is the gateway's (workerd, and wrangler's own Node process). */
  pids: () => number[];
  stop: () => Promise<void>;
};

/** The tenant with limits: far above what the benchmark sends, so every request is admitted. */
export const benchLimits = { requests_per_minute: 1_000_000, tokens_per_minute: 1_000_000_000 };

/**
 * The repo's wrangler.toml for the benchmark: the counting entry as main, the real bindings,
 * no console assets and no cron (a health check every minute would be measured too).
 */
function benchConfig(dir: string): string {
  const dropped = new Set(["[triggers]", "[assets]"]);
  let skipping = false;
  const lines = readFileSync(join(root, "wrangler.toml"), "utf8")
    .split("\n")
    .filter((line) => {
      if (line.startsWith("[")) skipping = dropped.has(line.trim());
      return !skipping;
    })
    .map((line) =>
      line
        .replace(/^main = .*$/, `main = ${JSON.stringify(entry)}`)
        .replace(
          /^migrations_dir = .*$/,
          `migrations_dir = ${JSON.stringify(join(root, "gateway", "migrations"))}`,
        ),
    );
  const path = join(dir, "wrangler.toml");
  writeFileSync(path, lines.join("\n"));
  return path;
}

/** All descendants of `pid` (workerd runs as a child of Miniflare's or wrangler's Node process). */
function descendants(pid: number): number[] {
  const out = spawnSync("ps", ["-e", "-o", "pid=,ppid="], { encoding: "utf8" }).stdout;
  const children = new Map<number, number[]>();
  for (const line of out.trim().split("\n")) {
    const [child, parent] = line.trim().split(/\s+/).map(Number) as [number, number];
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(pid);
  return found;
}

async function admin<T>(url: string, method: string, path: string, body: unknown): Promise<T> {
  const response = await fetch(`${url}/admin${path}`, {
    method,
    headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!response.ok)
    throw new Error(`${method} /admin${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

async function seed(url: string, backendUrl: string) {
  const model = "bench/stub-model";
  // SmolLM2-135M's shape (its config.json); the stub answers for it whatever it is asked
  await admin(url, "PUT", "/base-models", {
    name: model,
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    max_lora_rank: 64,
    max_position_embeddings: 8192,
  });
  await admin(url, "POST", "/backends", {
    id: "stub-0",
    url: backendUrl,
    base_model: model,
    capacity: 100_000,
  });
  const key = async (limits: object) => {
    const tenant = await admin<{ id: string }>(url, "POST", "/tenants", {
      name: `bench-${crypto.randomUUID().slice(0, 8)}`,
      ...limits,
    });
    return (
      await admin<{ key: string }>(url, "POST", `/tenants/${tenant.id}/keys`, {
        scopes: ["inference"],
      })
    ).key;
  };
  return { model, keys: { unlimited: await key({}), limited: await key(benchLimits) } };
}

async function startWorkerd(dir: string, backendUrl: string, direct: boolean): Promise<Gateway> {
  const config = benchConfig(dir);
  const bundle = join(dir, "worker.mjs");
  await build({
    entryPoints: [entry],
    outfile: bundle,
    bundle: true,
    format: "esm",
    platform: "browser",
    conditions: ["workerd", "worker", "browser"],
    external: ["cloudflare:*", "node:*"],
    logLevel: "warning",
  });
  const { workerOptions } = unstable_getMiniflareWorkerOptions(config);
  // Miniflare keeps D1/KV/R2/Durable Object/Queue state in a temporary directory of its own.
  const { assets: _noAssets, ...options } = workerOptions as Record<string, unknown>;
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: [
        {
          ...options,
          name: "lorafleet-gateway",
          modules: [{ type: "ESModule", path: bundle }],
          bindings: { ...(options.bindings as object), ...secrets },
          unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
        },
      ],
      host: "127.0.0.1",
      port: 0,
      // the gateway's log line per request is dropped here, as wrangler dev's is below
      handleStructuredLogs() {},
      ...(process.env.BENCH_INSPECTOR_PORT
        ? { inspectorPort: Number(process.env.BENCH_INSPECTOR_PORT) }
        : {}),
    } as Parameters<typeof convertV4MiniflareOptions>[0]),
  );
  const entryUrl = (await mf.ready).origin;
  const url = direct ? (await mf.unsafeGetDirectURL("lorafleet-gateway")).origin : entryUrl;
  const db = await mf.getD1Database("DB");
  const migrations = join(root, "gateway", "migrations");
  for (const file of spawnSync("ls", [migrations], { encoding: "utf8" })
    .stdout.trim()
    .split("\n")) {
    for (const query of unstable_splitSqlQuery(readFileSync(join(migrations, file), "utf8"))) {
      await db.prepare(query).run();
    }
  }
  const seeded = await seed(url, backendUrl);
  return {
    mode: direct ? "workerd" : "miniflare",
    url,
    ...seeded,
    pids: () => descendants(process.pid).filter((p) => commandOf(p).includes("workerd")),
    stop: () => mf.dispose(),
  };
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return "";
  }
}

async function waitForUrl(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`wrangler dev did not answer ${url}/healthz within ${timeoutMs} ms`);
}

async function startWranglerDev(dir: string, backendUrl: string, port: number): Promise<Gateway> {
  const config = benchConfig(dir);
  const state = join(dir, "state");
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" };
  const applied = spawnSync(
    wranglerBin,
    [
      "d1",
      "migrations",
      "apply",
      "lorafleet",
      "--local",
      "--config",
      config,
      "--persist-to",
      state,
    ],
    { encoding: "utf8", env },
  );
  if (applied.status !== 0) throw new Error(`wrangler d1 migrations apply: ${applied.stderr}`);
  const vars = Object.entries(secrets).flatMap(([k, v]) => ["--var", `${k}:${v}`]);
  const child = spawn(
    wranglerBin,
    [
      "dev",
      "--config",
      config,
      "--persist-to",
      state,
      "--ip",
      "127.0.0.1",
      "--port",
      String(port),
      "--show-interactive-dev-session=false",
      ...vars,
    ],
    { env, stdio: ["ignore", "ignore", "pipe"], detached: true },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitForUrl(url, child, 60_000);
  } catch (error) {
    throw new Error(`${String(error)}\n${stderr}`);
  }
  const seeded = await seed(url, backendUrl);
  const pid = child.pid ?? 0;
  return {
    mode: "wrangler-dev",
    url,
    ...seeded,
    pids: () => [pid, ...descendants(pid)],
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      process.kill(-pid, "SIGTERM");
      await exited;
    },
  };
}

/** Starts the gateway in `mode` with its state under `dir`, forwarding to `backendUrl`. */
export async function startGateway(mode: Mode, dir: string, backendUrl: string): Promise<Gateway> {
  mkdirSync(dir, { recursive: true });
  if (mode === "wrangler-dev") return startWranglerDev(dir, backendUrl, 18_787);
  return startWorkerd(dir, backendUrl, mode === "workerd");
}

/** Starts the stub backend in its own process; resolves with its URL and how to stop it. */
export async function startStub(tokens: number, tokenDelayMs: number) {
  const child = spawn(
    process.execPath,
    [
      join(import.meta.dirname, "stub-backend.ts"),
      "--tokens",
      String(tokens),
      "--token-delay-ms",
      String(tokenDelayMs),
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once("data", (d: Buffer) =>
      resolve((JSON.parse(d.toString()) as { port: number }).port),
    );
    child.once("exit", (code) => reject(new Error(`stub backend exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    },
  };
}

/** Reads the counting entry's counters (`reset`: and starts them again). */
export async function bindingCounts(url: string, reset = false) {
  const response = await fetch(`${url}/__bench/counts`, { method: reset ? "POST" : "GET" });
  return (await response.json()) as {
    requests: number;
    onPath: Record<string, number>;
    total: Record<string, number>;
    consumer: Record<string, number>;
  };
}

/** CPU seconds (user + system) used so far by the processes `pids`. */
export function cpuSeconds(pids: number[]): number {
  const tick = 100; // USER_HZ on Linux
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / tick;
}
