// `npm run soak`: the 10-minute soak of issue 8 (200 streaming clients against the real
// backend on this machine), after the usual set-up. Results go to bench/load/results/;
// see bench/load/README.md. Extra flags pass through: `npm run soak -- --soak 120`.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { root, SetupError, setup } from "./setup.mjs";

try {
  setup();
} catch (error) {
  if (!(error instanceof SetupError)) throw error;
  process.stderr.write(`[soak] set-up failed: ${error.message}\n`);
  process.exit(1);
}
const binDir = join(root, "node_modules", ".bin");
const args = process.argv.slice(2);
const result = spawnSync(
  join(binDir, "node"),
  ["bench/load/main.ts", ...(args.length > 0 ? args : ["--soak", "600"])],
  { cwd: root, stdio: "inherit", env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` } },
);
process.exit(result.status ?? 1);
