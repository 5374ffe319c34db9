// Load on loopback: 200 concurrent streaming clients over the base model and 8 adapters
// for a fixed time against the real backend: no 5xx, every answer complete ([DONE],
// usage with the tokens asked for), latency percentiles and RSS reported, idle after.
// Beyond capacity (a low queue bound) the answer is 429 with Retry-After, never a pile
// of timeouts. The 10-minute soak is `node bench/load/main.ts --soak 600`.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type LoadReport, runLoad } from "../../bench/load/load-run.ts";
import { type Backend, haveFixtures, repoRoot, startBackend } from "../backend/backend-process.ts";
import { expectIdle, expectServes } from "./backend-probe.ts";

const CLIENTS = 200;
const MODELS = [
  "tiny-llama",
  "tiny-r4",
  "tiny-r8",
  "tiny-r16",
  "tiny-r16-rslora",
  "tiny-mix-00",
  "tiny-mix-01",
  "tiny-mix-02",
  "tiny-mix-03",
];

/** One line for the log, and the whole report (without samples) under .cache/test-results. */
function publish(name: string, report: LoadReport): void {
  const { samples, heapUsed, ...memory } = report.memory;
  const shown = {
    ...report,
    memory: { ...memory, samples: samples.length, heapUsed: heapUsed.flatness },
  };
  const dir = join(repoRoot, ".cache/test-results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `reliability-${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`[reliability] ${name}: ${JSON.stringify(shown)}`);
}

describe.skipIf(!haveFixtures)(`${CLIENTS} concurrent streaming clients`, () => {
  let backend: Backend | undefined;
  const pids = () => (backend ? [backend.process.pid ?? 0, ...backend.childPids()] : []);
  afterEach(async () => {
    await backend?.stop();
    backend = undefined;
  });

  it("within capacity: every answer complete, no 5xx, idle after", async () => {
    backend = await startBackend(["--max-num-seqs", "256", "--max-model-len", "256"]);
    const report = await runLoad({
      url: backend.url,
      clients: CLIENTS,
      durationS: 20,
      models: MODELS,
      maxTokens: 24,
      pids,
      warmupS: 5,
      requestTimeoutMs: 60_000,
    });
    publish("load", report);
    expect(report.problems).toEqual([]);
    expect(report.requests.byVerdict).toEqual({ complete: report.requests.total });
    expect(report.requests.total).toBeGreaterThanOrEqual(CLIENTS);
    await expectIdle(backend.url);
    await expectServes(backend.url, "tiny-r8");
  });

  it("beyond capacity: 429 with Retry-After, no timeouts, the admitted ones complete", async () => {
    // 16 requests at once at most (8 running + 8 queued) against 200 clients
    backend = await startBackend(["--max-num-seqs", "8", "--max-queued-requests", "8"]);
    const report = await runLoad({
      url: backend.url,
      clients: CLIENTS,
      durationS: 10,
      models: MODELS,
      maxTokens: 24,
      pids,
      warmupS: 2,
      requestTimeoutMs: 30_000,
    });
    publish("backpressure", report);
    expect(report.problems).toEqual([]);
    const { complete = 0, rate_limited: refused = 0, ...others } = report.requests.byVerdict;
    expect(others).toEqual({});
    expect(refused).toBeGreaterThan(0);
    expect(complete).toBeGreaterThan(0);
    // admitted work is not stuck behind the crowd: a bounded queue means bounded latency
    expect(report.latencyMs.total?.p99).toBeLessThan(15_000);
    await expectIdle(backend.url);
  });
});
