/**
 * The gateway benchmark (issue 25): what the Worker adds to a request. The stub backend
 * (own process) answers at once, or streams tokens at a fixed delay; every point is run
 * against the stub directly (the baseline) and through the gateway, for a tenant without
 * limits and one with requests and tokens per minute, in workerd directly (a socket bound
 * to the Worker: the product's figure), through Miniflare's own server (its entry worker in
 * front) and through `wrangler dev` (its proxy in front).
 *
 *   node bench/gateway/main.ts                  # full: ~10 min on 2 cores
 *   node bench/gateway/main.ts --smoke --out /tmp/gw   # seconds: what `npm test` runs
 *
 * Writes <out>/gateway.json and <out>/gateway-added-latency.svg, and (full runs, unless
 * --no-summary) the `cpu-gateway` entry of bench/results/summary.json.
 */
import { execSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { lineChart } from "../src/svg-chart.ts";
import {
  benchLimits,
  bindingCounts,
  cpuSeconds,
  type Gateway,
  type Mode,
  root,
  startGateway,
  startStub,
} from "./gateway-targets.ts";
import {
  closedLoop,
  type Latency,
  type LoadResult,
  latencyOf,
  openLoop,
  type RequestSpec,
} from "./load.ts";

const { values } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    modes: { type: "string" },
    duration: { type: "string" },
    rates: { type: "string" },
    clients: { type: "string" },
    out: { type: "string", default: join(root, "bench", "results", "cpu-gateway") },
    "no-summary": { type: "boolean", default: false },
    /** rewrite the summary entry from an existing gateway.json, without measuring */
    "summary-from": { type: "string" },
  },
});
const smoke = values.smoke === true;
const list = (v: string | undefined, d: string) => (v ?? d).split(",").filter(Boolean);
const modes = list(values.modes, smoke ? "workerd" : "workerd,miniflare,wrangler-dev") as Mode[];
const durationS = Number(values.duration ?? (smoke ? 0.5 : 6));
const rates = list(values.rates, smoke ? "100" : "100,500,1000,2000").map(Number);
const clientCounts = list(values.clients, smoke ? "1,16" : "1,16,64").map(Number);
const streamRates = smoke ? [100] : [100, 500];
const streamTokens = 16;
const tokenDelayMs = 2;
const heldP99Ms = 10;
const out = values.out as string;

const log = (line: string) => process.stderr.write(`[bench:gateway] ${line}\n`);

type Point = {
  kind: "open" | "closed";
  /** requests/s offered (open) or clients (closed) */
  x: number;
  stream: boolean;
  requests: number;
  errors: number;
  /** the statuses of the errors; no answer is "0 <why>": a socket error's code (ECONNRESET...), cut mid-body, TIMEOUT */
  errorStatuses: Record<string, number>;
  achievedRps: number;
  maxSendLagMs: number;
  latencyMs: Latency;
  firstByteMs: Latency;
  /** through minus direct, per percentile, at the same point */
  addedMs?: Latency;
  addedFirstByteMs?: Latency;
  cpuMsPerRequest?: number;
};

function countBy(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[v] = (counts[v] ?? 0) + 1;
  return counts;
}

function pointOf(kind: Point["kind"], x: number, stream: boolean, r: LoadResult): Point {
  const ok = r.samples.filter((s) => s.status === 200);
  return {
    kind,
    x,
    stream,
    requests: r.samples.length,
    errors: r.samples.length - ok.length,
    errorStatuses: countBy(
      r.samples
        .filter((s) => s.status !== 200)
        .map((s) => (s.status === 0 ? `0 ${s.failure}` : String(s.status))),
    ),
    achievedRps: Math.round((r.samples.length / r.elapsedS) * 10) / 10,
    maxSendLagMs: Math.round(r.maxSendLagMs * 100) / 100,
    latencyMs: latencyOf(ok.map((s) => s.latencyMs)),
    firstByteMs: latencyOf(ok.map((s) => s.firstByteMs)),
  };
}

const minus = (a: Latency, b: Latency): Latency => {
  const d = (x: number, y: number) => Math.round((x - y) * 1000) / 1000;
  return { p50: d(a.p50, b.p50), p90: d(a.p90, b.p90), p99: d(a.p99, b.p99), max: d(a.max, b.max) };
};

const chatBody = (stream: boolean) =>
  JSON.stringify({
    model: "bench/stub-model",
    messages: [{ role: "user", content: "Say ok." }],
    max_tokens: streamTokens,
    ...(stream ? { stream: true } : {}),
  });

/** Every point of the plan against one target; `cpu` gives the target's CPU seconds so far. */
async function runPoints(name: string, spec: (stream: boolean) => RequestSpec, cpu?: () => number) {
  const points: Point[] = [];
  const measure = async (kind: Point["kind"], x: number, stream: boolean) => {
    const before = cpu?.();
    const result =
      kind === "open"
        ? await openLoop(spec(stream), x, durationS)
        : await closedLoop(spec(stream), x, durationS);
    const point = pointOf(kind, x, stream, result);
    if (cpu !== undefined && before !== undefined) {
      point.cpuMsPerRequest = Math.round(((cpu() - before) * 1e6) / point.requests) / 1000;
    }
    points.push(point);
    log(
      `${name.padEnd(28)} ${kind === "open" ? `${x} req/s` : `${x} clients`}${stream ? " (stream)" : ""}: ` +
        `${point.achievedRps} req/s, p50 ${point.latencyMs.p50} p99 ${point.latencyMs.p99} ms, errors ${point.errors}` +
        (point.cpuMsPerRequest !== undefined ? `, cpu ${point.cpuMsPerRequest} ms/req` : ""),
    );
  };
  // Rates go up until one is not kept up with (under 95 % of it served): higher ones would
  // only queue requests for minutes (wrangler dev on 2 cores serves well under 500/s).
  const openLoops = async (list: number[], stream: boolean) => {
    for (const rate of list) {
      await measure("open", rate, stream);
      const last = points.at(-1) as Point;
      if (last.achievedRps < 0.95 * rate) {
        log(
          `${name}: ${rate} req/s not kept up with; higher rates${stream ? " (stream)" : ""} not run`,
        );
        break;
      }
    }
  };
  await openLoops(rates, false);
  for (const clients of clientCounts) await measure("closed", clients, false);
  await openLoops(streamRates, true);
  return points;
}

/** Adds through-minus-direct to each point of `through` from the same point of `direct`. */
function withAdded(through: Point[], direct: Point[]): Point[] {
  return through.map((p) => {
    const base = direct.find((d) => d.kind === p.kind && d.x === p.x && d.stream === p.stream);
    return base === undefined
      ? p
      : {
          ...p,
          addedMs: minus(p.latencyMs, base.latencyMs),
          addedFirstByteMs: minus(p.firstByteMs, base.firstByteMs),
        };
  });
}

/** The highest open-loop rate served without errors, on schedule (95 %), with p99 under 10 ms. */
function heldRate(points: Point[]): number | null {
  const held = points.filter(
    (p) =>
      p.kind === "open" &&
      !p.stream &&
      p.errors === 0 &&
      p.achievedRps >= 0.95 * p.x &&
      p.latencyMs.p99 < heldP99Ms,
  );
  return held.length === 0 ? null : Math.max(...held.map((p) => p.x));
}

/** Binding calls per request, on the path and in all (background included), over serial requests. */
async function countsPerRequest(gateway: Gateway, key: string, n: number) {
  // what earlier load left in the usage Queue is consumed before the counts start
  await new Promise((r) => setTimeout(r, 2_500));
  await bindingCounts(gateway.url, true);
  const spec = gatewaySpec(gateway, key)(false);
  for (let i = 0; i < n; i += 1) await closedLoop(spec, 1, 0.001);
  await new Promise((r) => setTimeout(r, 2_500)); // the usage Queue's batch timeout, and its consumer
  const counts = await bindingCounts(gateway.url);
  const per = (c: Record<string, number>) =>
    Object.fromEntries(
      [
        "d1_queries",
        "d1_batches",
        "kv_reads",
        "kv_writes",
        "do_calls",
        "r2_ops",
        "queue_messages",
      ].map((k) => [k, Math.round(((c[k] ?? 0) / counts.requests) * 1000) / 1000]),
    );
  return {
    requests: counts.requests,
    onPath: per(counts.onPath),
    all: per(counts.total),
    usageConsumer: per(counts.consumer),
  };
}

function gatewaySpec(gateway: Gateway, key: string) {
  return (stream: boolean): RequestSpec => ({
    url: `${gateway.url}/v1/chat/completions`,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: chatBody(stream),
  });
}

async function main() {
  const gitSha = execSync("git rev-parse HEAD", { cwd: root, encoding: "utf8" }).trim();
  const command = `node bench/gateway/main.ts ${process.argv.slice(2).join(" ")}`.trim();
  const loadBefore = loadavg();
  log(
    `loadavg before ${loadBefore.map((l) => l.toFixed(2)).join(" ")}; ${cpus().length} cores; ${durationS} s a point`,
  );
  const stub = await startStub(streamTokens, tokenDelayMs);
  const work = mkdtempSync(join(tmpdir(), "bench-gateway-"));
  let gateway: Gateway | null = null;
  // Interrupted: stop what this run started (the stub, workerd or wrangler dev) before leaving.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      void Promise.allSettled([stub.stop(), gateway?.stop()]).then(() => process.exit(130));
    });
  }
  const results: Record<string, unknown> = {};
  try {
    const directSpec = (stream: boolean): RequestSpec => ({
      url: `${stub.url}/v1/chat/completions`,
      headers: { "content-type": "application/json" },
      body: chatBody(stream),
    });
    await closedLoop(directSpec(false), 4, 1); // warm-up
    const direct = await runPoints("direct", directSpec);
    results.direct = { points: direct };
    for (const mode of modes) {
      log(`starting the gateway: ${mode}`);
      gateway = await startGateway(mode, join(work, mode), stub.url);
      const running = gateway;
      try {
        const cpu = () => cpuSeconds(running.pids());
        const tenants: Record<string, unknown> = {};
        for (const [tenant, key] of Object.entries(running.keys)) {
          await closedLoop(gatewaySpec(running, key)(false), 4, 2); // warm-up: caches, slices, JIT
          const counts = await countsPerRequest(running, key, smoke ? 20 : 200);
          log(
            `${mode}/${tenant} per request on the path: ${JSON.stringify(counts.onPath)}; in all: ${JSON.stringify(counts.all)}; usage consumer: ${JSON.stringify(counts.usageConsumer)}`,
          );
          const points = withAdded(
            await runPoints(`${mode}/${tenant}`, gatewaySpec(running, key), cpu),
            direct,
          );
          tenants[tenant] = { counts, points, heldRps: heldRate(points) };
        }
        results[mode] = tenants;
        // kept as it goes: a later mode that fails leaves the ones before it on disk
        save(results, { command, gitSha, loadBefore, complete: false });
      } finally {
        await running.stop();
        gateway = null;
      }
    }
  } finally {
    await stub.stop();
    rmSync(work, { recursive: true, force: true });
  }
  const report = save(results, { command, gitSha, loadBefore, complete: true });
  log(`loadavg after ${report.machine.loadavg_after.map((l) => l.toFixed(2)).join(" ")}`);
  log(`wrote ${join(out, "gateway.json")}`);
  if (!smoke && values["no-summary"] !== true) writeSummary(report, join(out, "gateway.json"));
}

/** Writes gateway.json and the figure from what has been measured so far. */
function save(
  results: Record<string, unknown>,
  run: { command: string; gitSha: string; loadBefore: number[]; complete: boolean },
) {
  const report = {
    scenario: "gateway",
    command: run.command,
    git_sha: run.gitSha,
    measured_at: new Date().toISOString(),
    complete: run.complete,
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? "unknown",
      loadavg_before: run.loadBefore,
      loadavg_after: loadavg(),
    },
    plan: {
      durationS,
      rates,
      clientCounts,
      streamRates,
      streamTokens,
      tokenDelayMs,
      heldP99Ms,
      limitedTenant: benchLimits,
    },
    productMode: "workerd",
    results,
  };
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, "gateway.json"), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(out, "gateway-added-latency.svg"), figure(results));
  return report;
}

type TenantResult = { points: Point[]; heldRps: number | null };

function figure(results: Record<string, unknown>): string {
  const measured = modes.filter((mode) => results[mode] !== undefined);
  const series = measured.flatMap((mode) =>
    Object.entries(results[mode] as Record<string, TenantResult>).flatMap(([tenant, r]) =>
      (["p50", "p99"] as const).map((q) => ({
        name: `${mode} ${tenant} ${q}`,
        points: r.points
          .filter((p) => p.kind === "open" && !p.stream && p.addedMs !== undefined)
          .map((p): [number, number] => [p.x, Math.max(0, p.addedMs?.[q] ?? 0)]),
      })),
    ),
  );
  return lineChart({
    title: `Latency the gateway adds (through minus direct), ${cpus().length} cores`,
    xLabel: "requests/s offered (open loop)",
    yLabel: "added ms",
    series,
  });
}

/**
 * The `cpu-gateway` entry of bench/results/summary.json from a result: the product's figures
 * (workerd directly, tenant with limits). `gateway_max_rps` is the most requests/s it
 * sustained without errors (any load shape); `gateway_held_rps` the highest open-loop rate
 * held on schedule with p99 under 10 ms (null: none of the rates).
 */
function writeSummary(
  report: {
    command: string;
    git_sha: string;
    measured_at: string;
    machine: { loadavg_before: number[]; loadavg_after: number[] };
    results: Record<string, unknown>;
  },
  resultPath: string,
) {
  const path = join(root, "bench", "results", "summary.json");
  const summary = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  const limited = (report.results.workerd as Record<string, TenantResult> | undefined)?.limited;
  const at500 = limited?.points.find((p) => p.kind === "open" && !p.stream && p.x === 500);
  const sustained = (limited?.points ?? [])
    .filter((p) => !p.stream && p.errors === 0)
    .sort((x, y) => y.achievedRps - x.achievedRps)[0];
  const source = relative(join(root, "bench", "results"), resultPath);
  const load = (l: number[]) => l.map((x) => x.toFixed(2)).join(" ");
  summary["cpu-gateway"] = {
    gateway_added_p50_ms: at500?.addedMs?.p50 ?? null,
    gateway_added_p99_ms: at500?.addedMs?.p99 ?? null,
    gateway_max_rps: sustained?.achievedRps ?? null,
    gateway_held_rps: limited?.heldRps ?? null,
    command: report.command,
    git_sha: report.git_sha,
    measured_at: report.measured_at,
    device: `cpu-gateway: the gateway Worker in workerd directly (a socket bound to the Worker, no dev proxy), ${cpus().length} cores (${cpus()[0]?.model ?? "unknown"}) shared with the load generator, the stub backend and other work (loadavg ${load(report.machine.loadavg_before)} before, ${load(report.machine.loadavg_after)} after)`,
    sources: {
      gateway_added_p50_ms: `${source} (workerd, tenant with limits, 500 req/s open loop: p50 through minus p50 direct)`,
      gateway_added_p99_ms: `${source} (the same point: p99 through minus p99 direct)`,
      gateway_max_rps: `${source} (workerd, tenant with limits: the most requests/s sustained without errors over a point, ${sustained === undefined ? "none" : `${sustained.kind === "open" ? `open loop at ${sustained.x} req/s` : `closed loop, ${sustained.x} clients`}`})`,
      gateway_held_rps: `${source} (the highest open-loop rate of ${rates.join("/")} req/s served on schedule with no errors and p99 under ${heldP99Ms} ms; null: none)`,
    },
  };
  writeFileSync(path, `${JSON.stringify(summary, null, 2)}\n`);
  log(`wrote the cpu-gateway entry of ${path}`);
}

if (values["summary-from"] !== undefined) {
  const resultPath = values["summary-from"];
  writeSummary(JSON.parse(readFileSync(resultPath, "utf8")), resultPath);
} else {
  await main();
}
