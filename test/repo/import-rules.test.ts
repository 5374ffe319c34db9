// scripts/check-imports.mjs (run by `npm run check`): it fails on each line crossed,
// naming the file, the line and the rule, and passes on the repo as it is.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const repoRoot = join(import.meta.dirname, "../..");
const script = join(repoRoot, "scripts/check-imports.mjs");
const trees = mkdtempSync(join(tmpdir(), "lorafleet-import-rules-"));
afterAll(() => rmSync(trees, { recursive: true, force: true }));

/** A tree of the given files (path -> text) checked by the script. */
function check(files: Record<string, string>): { status: number | null; lines: string[] } {
  const root = mkdtempSync(join(trees, "tree-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const run = spawnSync(process.execPath, [script, root], { encoding: "utf8" });
  return { status: run.status, lines: run.stderr.split("\n").filter(Boolean) };
}

const allowed = {
  "gateway/src/app.ts": 'import { Hono } from "hono";\nimport { x } from "./x.ts";\n',
  "gpu-backend/src/engine/engine.ts":
    'import type { StepPlan } from "../protocol/messages.ts";\nimport { Sequence } from "./sequence.ts";\n',
  "gpu-backend/src/engine/engine.test.ts":
    'import fc from "fast-check";\nimport { describe } from "vitest";\n',
  "gpu-backend/src/protocol/protocol.ts":
    'import { encodeFrame } from "./frame.ts";\nimport { readFileSync } from "node:fs";\n',
  "gpu-backend/src/serving/serving-loop.ts":
    'import { Engine } from "../engine/index.ts";\nimport { ExecutorUnavailable } from "../executor/errors.ts";\n',
  "gpu-backend/src/tool-calls/call-grammar.ts":
    'import type { GrammarSpec } from "../protocol/messages.ts";\nimport { x } from "./x.ts";\n',
  "gpu-backend/src/tool-calls/call-grammar.test.ts":
    'import { TEST_PYTHON } from "../executor/test-fixtures.ts";\n',
  "gpu-backend/src/structured/schema-check.ts": 'import { Ajv } from "ajv";\n',
};

describe("the import rules", () => {
  it("pass on what they allow", () => {
    expect(check(allowed)).toEqual({ status: 0, lines: [] });
  });

  it("fail on each line crossed, naming file, line and rule", () => {
    const result = check({
      ...allowed,
      "gateway/src/routes.ts":
        'import { x } from "./x.ts";\nimport type { Engine } from "../../gpu-backend/src/engine/index.ts";\n',
      "gpu-backend/src/engine/scheduler.ts": [
        'import { StepFlag } from "../protocol/messages.ts";',
        'import type { ExecutorClient } from "../executor/client.ts";',
        'export { ServingLoop } from "../serving/serving-loop.ts";',
        'const fs = await import("node:fs");',
        'import { pino } from "pino";',
      ].join("\n"),
      "gpu-backend/src/engine/testing.ts": 'import fc from "fast-check";\n',
      "gpu-backend/src/protocol/messages.ts":
        'import type { EngineConfig } from "../engine/config.ts";\n',
      "gpu-backend/src/tool-calls/answer.ts":
        'import { ServingLoop } from "../serving/serving-loop.ts";\n',
      "gpu-backend/src/structured/output-grammar.ts":
        'import { ApiError } from "../server/openai-error.ts";\n',
    });
    expect(result.status).toBe(1);
    const engineOnly =
      "the engine imports only itself and protocol/ (no executor client, server or serving)";
    const noIo =
      "the engine does no I/O: no node: modules and no packages (tests: vitest, fast-check)";
    expect(result.lines).toEqual([
      'gateway/src/routes.ts:2: import "../../gpu-backend/src/engine/index.ts": the gateway never imports gpu-backend',
      `gpu-backend/src/engine/scheduler.ts:2: import "../executor/client.ts": ${engineOnly}`,
      `gpu-backend/src/engine/scheduler.ts:3: import "../serving/serving-loop.ts": ${engineOnly}`,
      `gpu-backend/src/engine/scheduler.ts:4: import "node:fs": ${noIo}`,
      `gpu-backend/src/engine/scheduler.ts:5: import "pino": ${noIo}`,
      `gpu-backend/src/engine/testing.ts:1: import "fast-check": ${noIo}`,
      'gpu-backend/src/protocol/messages.ts:1: import "../engine/config.ts": protocol/ imports nothing of engine, executor, server or serving (nor other src/ folders)',
      'gpu-backend/src/structured/output-grammar.ts:1: import "../server/openai-error.ts": structured/ imports only itself and protocol/: pure functions of a request and the model\'s text (tests: also executor/test-fixtures.ts)',
      'gpu-backend/src/tool-calls/answer.ts:1: import "../serving/serving-loop.ts": tool-calls/ imports only itself and protocol/: pure functions of a request and the model\'s text (tests: also executor/test-fixtures.ts)',
    ]);
  });

  it("hold in this repo", () => {
    const run = spawnSync(process.execPath, [script], { encoding: "utf8" });
    expect([run.status, run.stderr]).toEqual([0, ""]);
  });
});
