// Builds the console into console/dist (git-ignored), which wrangler.toml's [assets]
// serves: one bundled, minified app.js (Preact included, nothing from a CDN), the
// stylesheet and index.html. `node console/build.mjs` from anywhere.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(here, "src", "main.tsx")],
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "esm",
  target: "es2022",
  jsx: "automatic",
  jsxImportSource: "preact",
  outfile: join(out, "app.js"),
  logLevel: "warning",
});
for (const file of ["index.html", "styles.css", "_headers"])
  copyFileSync(join(here, "src", file), join(out, file));
process.stdout.write(`console built into ${out}\n`);
