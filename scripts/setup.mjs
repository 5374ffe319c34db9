// Bootstrap: everything `npm start` and `npm test` need, from a fresh clone.
// Runs on the machine's Node (20 is enough: no dependencies), is idempotent, and is
// quick when already done: each step keeps a stamp of the hash of the files it was
// made from and is skipped while the stamp matches.
//
//   node scripts/setup.mjs            node modules + Python env + model fixtures
//   node scripts/setup.mjs --models   the same (kept as the `npm run models` entry)
//   node scripts/setup.mjs --quiet    print only what is done, not what is skipped
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
export const cacheDir = join(root, ".cache");
export const fixturesDir = join(cacheDir, "fixtures");
const venvDir = join(root, ".venv");
const quiet = process.argv.includes("--quiet");

function log(message) {
  process.stderr.write(`[setup] ${message}\n`);
}

export class SetupError extends Error {}

function run(command, args, what, options = {}) {
  log(`${what}: ${command} ${args.join(" ")}`);
  const result = spawnSync(command, args, { cwd: root, stdio: "inherit", ...options });
  if (result.error || result.status !== 0) {
    const reason = result.error ? result.error.message : `exit code ${result.status}`;
    throw new SetupError(`${what} failed (${reason}). ${options.hint ?? ""}`.trim());
  }
}

function hashFiles(paths) {
  const hash = createHash("sha256");
  for (const path of paths) {
    hash.update(path);
    hash.update(existsSync(join(root, path)) ? readFileSync(join(root, path)) : "");
  }
  return hash.digest("hex").slice(0, 16);
}

/** Runs `make` unless the stamp at `stampPath` already records `hash`. */
function stamped(stampPath, hash, what, make) {
  if (existsSync(stampPath) && readFileSync(stampPath, "utf8").trim() === hash) {
    if (!quiet) log(`${what}: up to date`);
    return;
  }
  make();
  mkdirSync(dirname(stampPath), { recursive: true });
  writeFileSync(stampPath, `${hash}\n`);
}

function nodeModules() {
  const hash = hashFiles(["package-lock.json"]);
  stamped(join(root, "node_modules", ".lorafleet-stamp"), hash, "node modules", () =>
    run("npm", ["ci", "--no-audit", "--no-fund", "--foreground-scripts"], "node modules", {
      hint: "Check that the npm registry is reachable and package-lock.json is committed.",
    }),
  );
  const node = join(root, "node_modules", ".bin", "node");
  const version = spawnSync(node, ["-v"], { encoding: "utf8" }).stdout?.trim() ?? "";
  if (!/^v(2[2-9]|[3-9]\d)\./.test(version)) {
    throw new SetupError(
      `node_modules/.bin/node is ${version || "missing"}, Node >= 22 is needed: delete node_modules and run again.`,
    );
  }
}

/**
 * The executor's Python. On a machine with a CUDA torch already installed (the GPU
 * device), that Python is used as it is: set LORAFLEET_PYTHON to it, or it is found.
 * Elsewhere a venv in .venv gets the pinned CPU requirements.
 */
export function pythonPath() {
  if (process.env.LORAFLEET_PYTHON) return process.env.LORAFLEET_PYTHON;
  return join(venvDir, "bin", "python");
}

function systemHasCudaTorch() {
  if (process.env.LORAFLEET_PYTHON) return true;
  const probe = spawnSync(
    "python3",
    ["-c", "import torch, triton, sys; sys.exit(0 if torch.cuda.is_available() else 1)"],
    { stdio: "ignore" },
  );
  if (probe.status === 0) {
    process.env.LORAFLEET_PYTHON = spawnSync(
      "python3",
      ["-c", "import sys; print(sys.executable)"],
      {
        encoding: "utf8",
      },
    ).stdout.trim();
    return true;
  }
  return false;
}

function pythonEnv() {
  if (systemHasCudaTorch()) {
    if (!quiet) log(`python: using ${process.env.LORAFLEET_PYTHON} (CUDA torch installed there)`);
    return;
  }
  const files = ["gpu-backend/executor/requirements.txt", "gpu-backend/executor/pyproject.toml"];
  stamped(join(venvDir, ".lorafleet-stamp"), hashFiles(files), "python env", () => {
    const python = process.env.PYTHON ?? "python3";
    const probe = spawnSync(python, ["-c", "import sys; assert sys.version_info >= (3, 11)"]);
    if (probe.status !== 0) {
      throw new SetupError(
        `Python >= 3.11 is needed as \`${python}\` (or set PYTHON=/path/to/python3).`,
      );
    }
    if (!existsSync(join(venvDir, "bin", "python")))
      run(python, ["-m", "venv", venvDir], "python venv");
    const pip = [join(venvDir, "bin", "python"), "-m", "pip", "--disable-pip-version-check"];
    const hint =
      "Check that PyPI is reachable; torch==2.13.0 must be the CPU build (never unpinned).";
    run(
      pip[0],
      [...pip.slice(1), "install", "--progress-bar", "on", "-r", files[0]],
      "python packages",
      {
        hint,
      },
    );
    run(
      pip[0],
      [...pip.slice(1), "install", "-q", "--no-deps", "-e", "gpu-backend/executor"],
      "executor package",
      {
        hint,
      },
    );
  });
}

/** The tracked files under `dirs`, for stamps. */
function trackedFiles(dirs) {
  return spawnSync("git", ["ls-files", ...dirs], { cwd: root, encoding: "utf8" })
    .stdout.split("\n")
    .filter(Boolean);
}

function fixtures() {
  const hash = hashFiles(trackedFiles(["gpu-backend/executor/lorafleet_executor/fixtures"]));
  stamped(join(fixturesDir, ".lorafleet-stamp"), hash, "model fixtures", () => {
    rmSync(join(fixturesDir, ".lorafleet-stamp"), { force: true });
    run(
      pythonPath(),
      ["-m", "lorafleet_executor.fixtures", "--out", fixturesDir],
      "model fixtures",
      {
        hint: "See the messages above; `npm run models` retries.",
      },
    );
  });
}

/** The tenant console's static assets, which `wrangler dev` serves from console/dist. */
function consoleAssets() {
  const hash = hashFiles([...trackedFiles(["console"]), "package-lock.json"]);
  stamped(join(root, "console", "dist", ".lorafleet-stamp"), hash, "console", () =>
    run(join(root, "node_modules", ".bin", "node"), ["console/build.mjs"], "console build"),
  );
}

/** Debian's Chromium for the console's browser tests (installed when running as root). */
function chromium() {
  if (existsSync("/usr/bin/chromium")) {
    if (!quiet) log("chromium: /usr/bin/chromium");
    return;
  }
  run(process.execPath, ["test/console/ensure-chromium.mjs"], "chromium");
}

export function setup({ browser = false } = {}) {
  const started = Date.now();
  nodeModules();
  pythonEnv();
  fixtures();
  consoleAssets();
  if (browser) chromium();
  if (!quiet) log(`ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    setup();
  } catch (error) {
    if (!(error instanceof SetupError)) throw error;
    log(`error: ${error.message}`);
    process.exit(1);
  }
}
