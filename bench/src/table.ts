/**
 * Markdown tables of result files, for the README and the issue notes:
 *
 *   node bench/src/table.ts bench/results/h100-80gb-hbm3/*.json
 */
import { readFileSync } from "node:fs";
import type { ScenarioResult } from "./results.ts";

const fixed = (x: number | null | undefined, digits: number) =>
  typeof x === "number" ? x.toFixed(digits) : "–";

export function resultTable(result: ScenarioResult): string {
  const lines = [
    `**${result.scenario}** on ${result.device} (${result.model.shape ?? result.model.path}), git ${result.gitSha?.slice(0, 10)}: \`${result.command}\``,
    "",
    "| variant | point | req/s | output tok/s | first token p50 / p99 (s) | per token p50 (ms) | SLO | ok / aborted / failed |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of result.runs) {
    const m = r.metrics;
    if (m === null) {
      lines.push(
        `| ${r.variant} | ${r.point} | – | – | – | – | – | error: ${r.error?.split("\n")[0]} |`,
      );
      continue;
    }
    lines.push(
      `| ${r.variant} | ${r.point} | ${fixed(m.requestsPerS, 2)} | ${fixed(m.outputTokensPerS, 1)} | ` +
        `${fixed(m.firstTokenS.p50, 3)} / ${fixed(m.firstTokenS.p99, 3)} | ${fixed((m.perTokenS.p50 ?? Number.NaN) * 1000, 1)} | ` +
        `${fixed(m.sloAttainment * 100, 0)}% | ${m.ok} / ${m.aborted} / ${m.failed} |`,
    );
  }
  const peft = result.peftBaseline;
  if (peft !== null) {
    const rate = peft.result?.output_tokens_per_s;
    const shown = typeof rate === "number" ? rate.toFixed(1) : "–";
    lines.push(`| HF PEFT | ${peft.point} | – | ${shown} | – | – | – | ${peft.error ?? ""} |`);
  }
  const ratios = Object.entries(result.ratios);
  if (ratios.length > 0) {
    lines.push("", ratios.map(([key, value]) => `${key} = ${value.toFixed(3)}`).join(", "));
  }
  return `${lines.join("\n")}\n`;
}

if (import.meta.main) {
  const paths = process.argv
    .slice(2)
    .filter((p) => p.endsWith(".json") && !p.endsWith("summary.json"));
  for (const path of paths) {
    process.stdout.write(
      `${resultTable(JSON.parse(readFileSync(path, "utf8")) as ScenarioResult)}\n`,
    );
  }
}
