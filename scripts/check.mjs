// `npm run check`: types in every TypeScript project (each workspace's tsconfig.json
// extends the strict root base), the import rules (check-imports.mjs), Biome lint +
// format, ruff lint + format for Python, and the executor's import rules
// (scripts/check_python_imports.py).
// Runs every check even when one fails, then exits non-zero if any did.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { pythonPath, root, SetupError, setup } from "./setup.mjs";

try {
  setup();
} catch (error) {
  if (!(error instanceof SetupError)) throw error;
  process.stderr.write(`[check] set-up failed: ${error.message}\n`);
  process.exit(1);
}
const binDir = join(root, "node_modules", ".bin");
const env = { ...process.env, PATH: `${binDir}:${process.env.PATH}` };
const projects = spawnSync("git", ["ls-files", "*/tsconfig.json"], { cwd: root, encoding: "utf8" })
  .stdout.split("\n")
  .filter(Boolean);
const python = ["gpu-backend/executor", "bench", "scripts"];
const checks = [
  ...projects.map((project) => ["tsc", ["-p", project]]),
  [process.execPath, [join(root, "scripts", "check-imports.mjs")]],
  ["biome", ["check", "."]],
  [pythonPath(), ["-m", "ruff", "check", ...python]],
  [pythonPath(), ["-m", "ruff", "format", "--check", ...python]],
  [pythonPath(), ["scripts/check_python_imports.py", "gpu-backend/executor"]],
];
const failed = [];
for (const [command, args] of checks) {
  const label = `${command.split("/").pop()} ${args.join(" ")}`;
  process.stderr.write(`[check] ${label}\n`);
  const result = spawnSync(command, args, { cwd: root, env, stdio: "inherit" });
  if (result.status !== 0) failed.push(label);
}
process.stderr.write(
  failed.length ? `[check] failed: ${failed.join("; ")}\n` : "[check] all clean\n",
);
process.exit(failed.length ? 1 : 0);
