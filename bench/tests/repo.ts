/** Paths the bench tests run from: the repository, its Node 22 and the executor's Python. */
import { resolve } from "node:path";

export const repoRoot = resolve(import.meta.dirname, "..", "..");
export const python = process.env.LORAFLEET_PYTHON ?? resolve(repoRoot, ".venv/bin/python");
export const node = process.execPath;
