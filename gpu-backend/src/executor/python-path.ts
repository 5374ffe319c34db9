// Where the executor's Python lives unless the config says otherwise (--python, whose
// env twin LORAFLEET_PYTHON server/config.ts reads): the repo's venv, as `npm run setup`
// makes it.

import { fileURLToPath } from "node:url";

export const REPO_VENV_PYTHON = fileURLToPath(
  new URL("../../../.venv/bin/python", import.meta.url),
);
