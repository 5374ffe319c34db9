// `npm run bench -- <scenario> [flags]`: sets up what is missing, then runs the
// benchmark harness (bench/src/main.ts) on Node 22. See bench/README.md.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { root, SetupError, setup } from "./setup.mjs";

try {
  setup();
} catch (error) {
  if (!(error instanceof SetupError)) throw error;
  process.stderr.write(`[bench] set-up failed: ${error.message}\n`);
  process.exit(1);
}
const binDir = join(root, "node_modules", ".bin");
const result = spawnSync(join(binDir, "node"), ["bench/src/main.ts", ...process.argv.slice(2)], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, PATH: `${binDir}:${process.env.PATH}` },
});
process.exit(result.status ?? 1);
