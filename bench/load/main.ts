// The load/soak tool: `node bench/load/main.ts [flags]`.
//
//   node bench/load/main.ts                        # 200 clients, 30 s, own backend (tiny model, CPU)
//   node bench/load/main.ts --soak 600             # the 10-minute soak: memory flatness judged
//   node bench/load/main.ts --url http://127.0.0.1:8000 --pid 1234 --clients 64 --duration 60
//
// Without --url it starts the real backend (gpu-backend/src/server/main.ts) with the tiny
// fixture model on CPU. It prints one summary line and writes the whole report as JSON
// (--out; for --soak by default bench/load/results/soak-<date>.json). Exit status 1 when
// an answer was neither complete nor a proper 429, when the backend is not idle after
// (requests, KV pages, adapter pins), or, for a soak, when memory is not flat.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { startBackend } from "../../test/backend/backend-process.ts";
import { runLoad } from "./load-run.ts";

/** A soak is flat when RSS after the warm-up grows by at most this share of where it started. */
const FLAT_GROWTH = 0.05;
const IDLE_GAUGES = [
  "lorafleet_running_requests",
  "lorafleet_queue_depth",
  'lorafleet_pool_pages{use="kv"}',
  "lorafleet_adapter_pins",
];
const DEFAULT_MODELS =
  "tiny-llama,tiny-r4,tiny-r8,tiny-r16,tiny-r16-rslora,tiny-mix-00,tiny-mix-01,tiny-mix-02,tiny-mix-03";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    pid: { type: "string", multiple: true, default: [] },
    clients: { type: "string", default: "200" },
    duration: { type: "string", default: "30" },
    soak: { type: "string" },
    "max-tokens": { type: "string", default: "24" },
    models: { type: "string", default: DEFAULT_MODELS },
    out: { type: "string" },
  },
});
const soakS = values.soak === undefined ? null : Number(values.soak);
const durationS = soakS ?? Number(values.duration);
const clients = Number(values.clients);
if (!(durationS > 0) || !(clients > 0)) {
  process.stderr.write("--duration/--soak and --clients must be positive numbers\n");
  process.exit(2);
}

async function idleGauges(url: string): Promise<Record<string, number>> {
  const deadline = Date.now() + 10_000;
  let gauges: Record<string, number> = {};
  while (Date.now() < deadline) {
    const text = await (await fetch(`${url}/metrics`)).text();
    gauges = Object.fromEntries(
      IDLE_GAUGES.map((name) => {
        const line = text.split("\n").find((l) => l.startsWith(`${name} `));
        return [name, Number(line?.slice(name.length + 1) ?? Number.NaN)];
      }),
    );
    if (Object.values(gauges).every((v) => v === 0)) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return gauges;
}

const own =
  values.url === undefined
    ? await startBackend(["--max-num-seqs", "256", "--max-model-len", "256"])
    : null;
const url = values.url ?? own?.url ?? "";
const pids = () =>
  own ? [own.process.pid ?? 0, ...own.childPids()] : (values.pid ?? []).map(Number);
try {
  const report = await runLoad({
    url,
    clients,
    durationS,
    models: values.models.split(","),
    maxTokens: Number(values["max-tokens"]),
    pids,
    sampleIntervalMs: soakS === null ? 1000 : 5000,
    warmupS: soakS === null ? Math.min(10, durationS / 5) : 60,
    onProgress: (line) => process.stderr.write(`[load] ${line}\n`),
  });
  const idleAfter = await idleGauges(url);
  const idle = Object.values(idleAfter).every((v) => v === 0);
  const flatness = report.memory.flatness;
  const flat =
    soakS === null || (flatness !== null && flatness.growthMiB <= FLAT_GROWTH * flatness.startMiB);
  const result = {
    kind: soakS === null ? "load" : "soak",
    date: new Date().toISOString(),
    host: { cpus: (await import("node:os")).cpus().length, node: process.version },
    verdict: { noProblems: report.problems.length === 0, idleAfter: idle, memoryFlat: flat },
    flatCriterion: `RSS growth after the warm-up <= ${FLAT_GROWTH * 100}% of its start`,
    idleAfter,
    ...report,
  };
  const out =
    values.out ??
    (soakS === null
      ? undefined
      : join(import.meta.dirname, "results", `soak-${result.date.slice(0, 10)}.json`));
  if (out !== undefined) {
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  }
  const { samples: _samples, heapUsed, ...memory } = report.memory;
  process.stdout.write(
    `${JSON.stringify({ verdict: result.verdict, requests: report.requests, latencyMs: report.latencyMs, throughput: report.throughput, memory: { ...memory, heapUsed: heapUsed.flatness }, problems: report.problems })}\n`,
  );
  process.exitCode = result.verdict.noProblems && idle && flat ? 0 : 1;
} finally {
  await own?.stop();
}
