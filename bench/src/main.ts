/**
 * `node bench/src/main.ts <scenario> [flags]` (the root's `npm run bench -- <scenario>`):
 * runs one benchmark scenario against the real backend and writes its result JSON to
 * <out>/<device>/<scenario>.json; on a GPU also merges the headline figures into
 * <out>/summary.json. Progress goes to stderr; the result file's path to stdout.
 */
import { join, relative, resolve } from "node:path";
import { parseCli, USAGE, UsageError } from "./cli-args.ts";
import { deviceSlug, gpuName, probeEnvironment } from "./environment.ts";
import {
  computeRatios,
  prefixRatios,
  RESULT_SCHEMA,
  type ScenarioResult,
  updateSummary,
  writeJson,
} from "./results.ts";
import { BenchToolError, runScenario } from "./run-scenario.ts";
import { planScenario } from "./scenarios.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");

const started = performance.now();

function log(message: string): void {
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(`[bench +${seconds}s] ${message}\n`);
}

/** The command as typed, shell-quoted where needed, to put in the result. */
function commandLine(argv: string[]): string {
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`);
  return ["node", "bench/src/main.ts", ...argv].map(quote).join(" ");
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  const cli = parseCli(argv, repoRoot, process.env);
  const startedAt = new Date().toISOString();
  const environment = probeEnvironment(cli.python, repoRoot, process.env.LORAFLEET_GIT_SHA ?? null);
  log(`${cli.scenario} on ${environment.device} (git ${environment.gitSha?.slice(0, 10)})`);
  const planned = planScenario(cli.scenario, cli.plan);
  const plan = cli.peft ? planned : { ...planned, peft: null };
  const runs = await runScenario(plan, {
    repoRoot,
    python: cli.python,
    workDir: cli.workDir,
    serverEntry: cli.serverEntry,
    extraServerArgs: cli.serverArgs,
    extraBody: cli.body,
    readyTimeoutS: cli.readyTimeoutS,
    maxConcurrency: cli.maxConcurrency,
    log,
  });
  const labels = plan.points.map((p) => p.label);
  // S-LoRA-style trace points (Gamma arrivals) bound the `_min` ratios; a burst batch not
  const traces = plan.points
    .filter((p) => p.spec.kind === "synthetic" && p.spec.arrival.kind === "gamma")
    .map((p) => p.label);
  const result: ScenarioResult = {
    schema: RESULT_SCHEMA,
    scenario: cli.scenario,
    ...environment,
    command: commandLine(argv),
    startedAt,
    finishedAt: new Date().toISOString(),
    model: {
      path: runs.modelPath,
      shape: plan.model.kind === "generated" ? plan.model.shape : null,
    },
    sloFirstTokenS: plan.sloFirstTokenS,
    maxConcurrency: cli.maxConcurrency,
    runs: runs.runs,
    peftBaseline: runs.peft,
    traces: runs.traces,
    ratios: {
      ...computeRatios(runs.runs, labels, runs.peft, traces.length > 0 ? traces : labels),
      ...prefixRatios(runs.runs, labels, runs.traces),
    },
  };
  const file = join(cli.outDir, deviceSlug(environment.device), `${cli.scenario}.json`);
  writeJson(file, result);
  log(`wrote ${file}`);
  if (cli.summary && environment.device !== "cpu") {
    const summaryFile = join(cli.outDir, "summary.json");
    const keys = updateSummary(
      summaryFile,
      gpuName(environment.device),
      result,
      relative(cli.outDir, file),
    );
    if (keys.length > 0) log(`updated ${summaryFile}: ${keys.join(", ")}`);
  }
  process.stdout.write(`${file}\n`);
  const failed = result.runs.filter((r) => r.error !== null || (r.metrics?.ok ?? 0) === 0);
  for (const r of failed)
    log(`run ${r.variant} ${r.point} produced no completed requests: ${r.error ?? "all failed"}`);
  return failed.length > 0 || result.peftBaseline?.error ? 1 : 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    process.exitCode = 2;
  } else if (error instanceof BenchToolError) {
    log(`error: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
