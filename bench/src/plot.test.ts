import { describe, expect, it } from "vitest";
import { figuresFor } from "./plot.ts";
import type { ScenarioResult } from "./results.ts";
import { niceTicks } from "./svg-chart.ts";
import { run } from "./testing/result-fixtures.ts";

function result(scenario: string, runs: ScenarioResult["runs"]): ScenarioResult {
  return {
    scenario,
    device: "NVIDIA H100 80GB HBM3",
    model: { path: "/m", shape: "llama-2-7b" },
    runs,
    peftBaseline: null,
  } as unknown as ScenarioResult;
}

const count = (svg: string, tag: string) => svg.split(`<${tag} `).length - 1;

describe("figures", () => {
  it("draws throughput vs adapters on a log axis, base flat across the sweep", () => {
    const [figure] = figuresFor(
      result("sweep-adapters", [
        run("base", "n=1", 1000, 1),
        run("slora", "n=1", 950, 1),
        run("slora", "n=100", 900, 100),
        run("slora", "n=2000", 850, 2000),
      ]),
    );
    expect(figure?.file).toBe("sweep-adapters.svg");
    const svg = figure?.svg ?? "";
    expect(svg.startsWith("<svg")).toBe(true);
    expect(count(svg, "circle")).toBe(6); // 3 slora points + base drawn at 3 x
    expect(svg).toContain("base (first n)");
    expect(svg).toContain(">1000<"); // a log tick
  });

  it("draws rate sweeps as two charts and ablations as bars with PEFT", () => {
    const rate = result("sweep-rate", [run("slora", "rate=1", 100), run("slora", "rate=2", 200)]);
    expect(figuresFor(rate).map((f) => f.file)).toEqual([
      "sweep-rate-throughput.svg",
      "sweep-rate-first-token.svg",
    ]);
    const ablations = result("ablations", [
      run("slora", "peft-batch", 3000),
      run("bmm", "peft-batch", 1500),
      run("no-unifymem", "peft-batch", null),
    ]);
    ablations.peftBaseline = {
      point: "peft-batch",
      result: { output_tokens_per_s: 20 },
      error: null,
    };
    const [bars] = figuresFor(ablations);
    expect(count(bars?.svg ?? "", "rect")).toBe(1 + 3 + 4); // background, 3 bars, 4 legend keys
    expect(bars?.svg).toContain("HF PEFT: 20");
    expect(bars?.svg).toContain(">3000</text>"); // value printed over its bar
  });

  it("escapes text", () => {
    const r = result("smoke", [run("a<b", "p&q", 5)]);
    expect(figuresFor(r)[0]?.svg).toContain("a&#60;b");
  });
});

describe("niceTicks", () => {
  it("covers the range in steps of 1, 2 or 5 × 10^k", () => {
    expect(niceTicks(0, 950)).toEqual([0, 200, 400, 600, 800, 1000]);
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 0.033)).toEqual([0, 0.01, 0.02, 0.03, 0.04]);
  });
});
