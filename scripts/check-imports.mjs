// The lines TypeScript imports must not cross (gpu-backend/README.md, "Import rules"):
// `node scripts/check-imports.mjs [DIR]` reads every .ts/.mts/.js/.mjs file under
// DIR/gateway and DIR/gpu-backend/src (DIR: the repo) with TypeScript's own import
// scanner, prints each import that breaks a rule as `file:line: import "x": rule`, and
// exits 1 if there is one. `npm run check` runs it.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, posix, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** Packages engine tests may use: test tooling, no I/O of the engine's own. */
const TEST_TOOLS = new Set(["vitest", "fast-check"]);
const SOURCE = /\.(ts|mts|js|mjs)$/;
const SKIP = new Set(["node_modules", "dist", ".wrangler", ".cache"]);

/**
 * Each rule: which files (`under`, repo-relative), and why an import of `target` is refused
 * (`refuse` returns the reason, or null). `target.path` is the repo-relative file a relative
 * import names; bare specifiers (packages, `node:` modules) have none.
 */
export const RULES = [
  {
    under: "gateway/",
    refuse: ({ path, specifier }) =>
      path?.startsWith("gpu-backend/") || specifier.startsWith("@lorafleet/gpu-backend")
        ? "the gateway never imports gpu-backend"
        : null,
  },
  {
    under: "gpu-backend/src/engine/",
    refuse: ({ path, specifier }, file) => {
      if (path !== undefined) {
        return path.startsWith("gpu-backend/src/engine/") ||
          path.startsWith("gpu-backend/src/protocol/")
          ? null
          : "the engine imports only itself and protocol/ (no executor client, server or serving)";
      }
      return file.endsWith(".test.ts") && TEST_TOOLS.has(specifier)
        ? null
        : "the engine does no I/O: no node: modules and no packages (tests: vitest, fast-check)";
    },
  },
  ...["tool-calls", "structured"].map((folder) => ({
    under: `gpu-backend/src/${folder}/`,
    refuse: ({ path }, file) =>
      path === undefined ||
      path.startsWith(`gpu-backend/src/${folder}/`) ||
      path.startsWith("gpu-backend/src/protocol/") ||
      (file.endsWith(".test.ts") && path === "gpu-backend/src/executor/test-fixtures.ts")
        ? null
        : `${folder}/ imports only itself and protocol/: pure functions of a request and the model's text (tests: also executor/test-fixtures.ts)`,
  })),
  {
    under: "gpu-backend/src/protocol/",
    refuse: ({ path }) =>
      path === undefined || path.startsWith("gpu-backend/src/protocol/")
        ? null
        : "protocol/ imports nothing of engine, executor, server or serving (nor other src/ folders)",
  },
];

function* sourceFiles(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return; // a tree without this folder
  }
  for (const entry of entries) {
    if (SKIP.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (SOURCE.test(entry.name) && !entry.name.endsWith(".d.ts")) yield path;
  }
}

/** Every import under `root` that breaks a rule: `{ file, line, specifier, reason }`. */
export function importViolations(root) {
  const violations = [];
  for (const top of ["gateway", join("gpu-backend", "src")]) {
    for (const absolute of sourceFiles(join(root, top))) {
      const file = relative(root, absolute).split(sep).join(posix.sep);
      const rules = RULES.filter((rule) => file.startsWith(rule.under));
      if (rules.length === 0) continue;
      const text = readFileSync(absolute, "utf8");
      const { importedFiles } = ts.preProcessFile(text, true, true);
      for (const { fileName: specifier, pos } of importedFiles) {
        const path = specifier.startsWith(".")
          ? posix.normalize(posix.join(posix.dirname(file), specifier))
          : undefined;
        for (const rule of rules) {
          const reason = rule.refuse({ path, specifier }, file);
          if (reason === null) continue;
          const line = text.slice(0, pos).split("\n").length;
          violations.push({ file, line, specifier, reason });
        }
      }
    }
  }
  return violations;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), ".."));
  const violations = importViolations(root);
  for (const { file, line, specifier, reason } of violations) {
    process.stderr.write(`${file}:${line}: import "${specifier}": ${reason}\n`);
  }
  process.exit(violations.length === 0 ? 0 : 1);
}
