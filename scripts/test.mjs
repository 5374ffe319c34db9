// `npm test`: sets up what is missing, runs every suite, prints each runner's own
// summary, then one line totalling them all: `N passed, N failed, N skipped`.
// Exits non-zero if any test failed or a runner could not run.
//
//   npm test                      every suite
//   npm test -- executor gateway  only the named suites
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cacheDir, pythonPath, root, SetupError, setup } from "./setup.mjs";

const resultsDir = join(cacheDir, "test-results");
const binDir = join(root, "node_modules", ".bin");

/** Each suite: how to run it, and where its runner writes machine-readable counts. */
const suites = [
  { name: "api", kind: "vitest", config: "api/vitest.config.ts" },
  { name: "gpu-backend", kind: "vitest", config: "gpu-backend/vitest.config.ts" },
  { name: "gateway", kind: "vitest", config: "gateway/vitest.config.ts" },
  { name: "executor", kind: "pytest", dir: "gpu-backend/executor/tests" },
  { name: "e2e", kind: "vitest", config: "test/vitest.config.ts" },
  { name: "console", kind: "vitest", config: "test/console/vitest.config.ts" },
  { name: "bench-smoke", kind: "vitest", config: "bench/vitest.config.ts" },
];

function runVitest(suite) {
  const output = join(resultsDir, `${suite.name}.json`);
  const result = spawnSync(
    join(binDir, "vitest"),
    [
      "run",
      "--config",
      suite.config,
      "--reporter=default",
      "--reporter=json",
      `--outputFile.json=${output}`,
    ],
    { cwd: root, stdio: "inherit" },
  );
  if (!existsSync(output)) return { passed: 0, failed: 0, skipped: 0, crashed: result.status ?? 1 };
  const report = JSON.parse(readFileSync(output, "utf8"));
  const crashed = report.numFailedTestSuites > 0 && report.numFailedTests === 0 ? 1 : 0;
  return {
    passed: report.numPassedTests,
    failed: report.numFailedTests,
    skipped: report.numPendingTests + report.numTodoTests,
    crashed: crashed || (result.status !== 0 && report.numFailedTests === 0 ? result.status : 0),
  };
}

function runPytest(suite) {
  const output = join(resultsDir, `${suite.name}.xml`);
  const result = spawnSync(
    pythonPath(),
    ["-m", "pytest", suite.dir, `--junitxml=${output}`, "-q"],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
  if (!existsSync(output)) return { passed: 0, failed: 0, skipped: 0, crashed: result.status ?? 1 };
  const head = readFileSync(output, "utf8").match(/<testsuite [^>]*>/)?.[0] ?? "";
  const count = (name) => Number(head.match(new RegExp(`\\b${name}="(\\d+)"`))?.[1] ?? 0);
  const failed = count("failures") + count("errors");
  const skipped = count("skipped");
  const crashed = result.status !== 0 && failed === 0 && result.status !== 5 ? result.status : 0;
  return { passed: count("tests") - failed - skipped, failed, skipped, crashed };
}

function main() {
  try {
    setup({ browser: true });
  } catch (error) {
    if (!(error instanceof SetupError)) throw error;
    process.stderr.write(`[test] set-up failed: ${error.message}\n`);
    process.exit(1);
  }
  // Runners started from here must find Node 22 first (vitest's `#!/usr/bin/env node`).
  process.env.PATH = `${binDir}:${process.env.PATH}`;
  rmSync(resultsDir, { recursive: true, force: true });
  mkdirSync(resultsDir, { recursive: true });

  const only = process.argv.slice(2);
  const totals = { passed: 0, failed: 0, skipped: 0 };
  const lines = [];
  for (const suite of suites) {
    if (only.length > 0 && !only.includes(suite.name)) continue;
    const present =
      suite.kind === "pytest"
        ? existsSync(join(root, suite.dir))
        : existsSync(join(root, suite.config));
    if (!present) continue;
    process.stderr.write(`\n[test] ── ${suite.name} ──\n`);
    const started = Date.now();
    const counts = suite.kind === "pytest" ? runPytest(suite) : runVitest(suite);
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    if (counts.crashed) counts.failed += 1;
    totals.passed += counts.passed;
    totals.failed += counts.failed;
    totals.skipped += counts.skipped;
    const crash = counts.crashed ? ` (runner exited with ${counts.crashed})` : "";
    lines.push(
      `${suite.name}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped, ${seconds} s${crash}`,
    );
  }
  process.stdout.write(`\n${lines.join("\n")}\n`);
  process.stdout.write(
    `${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`,
  );
  process.exit(totals.failed > 0 ? 1 : 0);
}

main();
