/**
 * Figures from result JSON files, as SVG next to them:
 *   sweep-adapters → <dir>/sweep-adapters.svg   throughput vs number of adapters
 *   sweep-rate     → <dir>/sweep-rate-throughput.svg, <dir>/sweep-rate-first-token.svg
 *   ablations      → <dir>/ablations.svg        throughput per variant (and HF PEFT)
 *   smoke          → <dir>/smoke.svg            throughput per variant
 *
 *   node bench/src/plot.ts bench/results/h100-80gb-hbm3/*.json
 */
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ScenarioResult } from "./results.ts";
import { barChart, lineChart, type Series } from "./svg-chart.ts";

export interface Figure {
  /** file name, written next to the result */
  file: string;
  svg: string;
}

type Pick = (r: ScenarioResult["runs"][number]) => number | null | undefined;

function seriesBy(result: ScenarioResult, param: string, value: Pick): Series[] {
  const variants = [...new Set(result.runs.map((r) => r.variant))];
  return variants.map((name) => ({
    name,
    points: result.runs
      .filter((r) => r.variant === name && r.metrics !== null)
      .map((r): [number, number | null | undefined] => [r.params[param] as number, value(r)])
      .filter((p): p is [number, number] => typeof p[1] === "number"),
  }));
}

/** A variant measured once (the plan's "first" points) is drawn flat across the sweep. */
function extendFlat(series: Series[], xs: number[]): Series[] {
  return series.map((s) => {
    const only = s.points[0];
    return s.points.length === 1 && only && xs.length > 1
      ? {
          name: `${s.name} (first n)`,
          points: xs.map((x): [number, number] => [x, only[1]]),
        }
      : s;
  });
}

const tokensPerS: Pick = (r) => r.metrics?.outputTokensPerS;

export function figuresFor(result: ScenarioResult): Figure[] {
  // Every figure names the commit it was measured at (issue 21 item 5).
  const where = `${result.device}, ${result.model.shape ?? result.model.path}, git ${result.gitSha?.slice(0, 10) ?? "unknown"}`;
  switch (result.scenario) {
    case "sweep-adapters": {
      const xs = [...new Set(result.runs.map((r) => r.params.numAdapters as number))];
      return [
        {
          file: "sweep-adapters.svg",
          svg: lineChart({
            title: `Throughput vs number of adapters (${where})`,
            xLabel: "adapters",
            yLabel: "output tokens/s",
            xLog: Math.min(...xs) > 0,
            series: extendFlat(seriesBy(result, "numAdapters", tokensPerS), xs),
          }),
        },
      ];
    }
    case "sweep-rate":
      return [
        {
          file: "sweep-rate-throughput.svg",
          svg: lineChart({
            title: `Throughput vs request rate (${where})`,
            xLabel: "requests/s offered",
            yLabel: "output tokens/s",
            series: seriesBy(result, "rate", tokensPerS),
          }),
        },
        {
          file: "sweep-rate-first-token.svg",
          svg: lineChart({
            title: `First-token latency p50 vs request rate (${where})`,
            xLabel: "requests/s offered",
            yLabel: "seconds",
            series: seriesBy(result, "rate", (r) => r.metrics?.firstTokenS.p50),
          }),
        },
      ];
    default: {
      const points = [...new Set(result.runs.map((r) => r.point))];
      const groups = points.map((point) => {
        const values: Record<string, number | null> = {};
        for (const r of result.runs.filter((run) => run.point === point)) {
          values[r.variant] = r.metrics?.outputTokensPerS ?? null;
        }
        const peft = result.peftBaseline;
        const rate = peft?.result?.output_tokens_per_s;
        if (peft?.point === point && typeof rate === "number") values["HF PEFT"] = rate;
        return { label: point, values };
      });
      return [
        {
          file: `${result.scenario}.svg`,
          svg: barChart({
            title: `Throughput by system (${where})`,
            yLabel: "output tokens/s",
            groups,
          }),
        },
      ];
    }
  }
}

/**
 * Figures of each scenario result (other JSON, such as bench/gpu's results, is skipped),
 * named after the result file: ablations-peft.json's figure must not replace ablations'.
 */
export function plotFiles(paths: string[]): string[] {
  const written: string[] = [];
  for (const path of paths) {
    const result = JSON.parse(readFileSync(path, "utf8")) as ScenarioResult;
    if (typeof result.scenario !== "string" || !Array.isArray(result.runs)) continue;
    for (const figure of figuresFor(result)) {
      const suffix = figure.file.slice(result.scenario.length); // e.g. "-latency.svg"
      const out = join(dirname(path), `${basename(path, ".json")}${suffix}`);
      writeFileSync(out, figure.svg);
      written.push(out);
    }
  }
  return written;
}

if (import.meta.main) {
  const paths = process.argv
    .slice(2)
    .filter((p) => p.endsWith(".json") && !p.endsWith("summary.json"));
  if (paths.length === 0) {
    process.stderr.write("usage: node bench/src/plot.ts <result.json>...\n");
    process.exitCode = 2;
  } else {
    for (const out of plotFiles(paths)) process.stdout.write(`${out}\n`);
  }
}
