// Where the executor's Python lives: LORAFLEET_PYTHON when set, else the repo's venv.

import { fileURLToPath } from "node:url";

export const REPO_VENV_PYTHON = fileURLToPath(
  new URL("../../../.venv/bin/python", import.meta.url),
);

export function defaultPythonPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.LORAFLEET_PYTHON || REPO_VENV_PYTHON;
}
