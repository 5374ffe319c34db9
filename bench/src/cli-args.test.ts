import { describe, expect, it } from "vitest";
import { parseCli, UsageError } from "./cli-args.ts";
import { planScenario } from "./scenarios.ts";
import { generateTrace } from "./workload.ts";

const root = "/repo";

describe("parseCli", () => {
  it("fills defaults from the repository and the environment", () => {
    const cli = parseCli(["sweep-rate"], root, { LORAFLEET_PYTHON: "/usr/bin/python3" });
    expect(cli).toMatchObject({
      scenario: "sweep-rate",
      outDir: "/repo/bench/results",
      workDir: "/repo/.cache/bench",
      python: "/usr/bin/python3",
      serverEntry: "/repo/gpu-backend/src/server/main.ts",
      serverArgs: [],
      body: { ignore_eos: true },
      summary: true,
      peft: true,
      maxConcurrency: null,
    });
    expect(cli.plan).toMatchObject({ seed: 0, shape: "llama-2-7b", rates: null, variants: null });
  });

  it("reads sweeps, variants, extra server flags and body fields", () => {
    const cli = parseCli(
      [
        "ablations",
        "--adapters=500",
        "--rates",
        "1,2.5",
        "--variants",
        "slora,bmm",
        "--server-args=--max-loras 64  --num-pages 9000",
        "--body",
        '{"ignore_eos":false,"top_k":1}',
        "--no-summary",
        "--no-peft",
        "--max-concurrency",
        "64",
      ],
      root,
      {},
    );
    expect(cli.plan).toMatchObject({
      adapters: [500],
      rates: [1, 2.5],
      variants: ["slora", "bmm"],
    });
    expect(cli.serverArgs).toEqual(["--max-loras", "64", "--num-pages", "9000"]);
    expect(cli.body).toEqual({ ignore_eos: false, top_k: 1 });
    expect(cli.summary).toBe(false);
    expect(cli.peft).toBe(false);
    expect(cli.maxConcurrency).toBe(64);
  });

  it("refuses bad input by name", () => {
    const bad = (argv: string[]) => () => parseCli(argv, root, {});
    expect(bad([])).toThrow(UsageError);
    expect(bad(["sweep"])).toThrow(/expected one scenario of smoke, sweep-adapters/);
    expect(bad(["smoke", "--rate", "0"])).toThrow(/--rate: expected a positive number/);
    expect(bad(["smoke", "--adapters", "1,x"])).toThrow(/--adapters: expected an integer/);
    expect(bad(["smoke", "--variants", "vllm"])).toThrow(/unknown variant vllm/);
    expect(bad(["smoke", "--body", "[1]"])).toThrow(/--body must be a JSON object/);
    expect(bad(["smoke", "--shape", "llama-3-8b"])).toThrow(/unknown shape/);
    expect(bad(["ablations", "--shape", "tiny"])).toThrow(/pressure scenario's CPU smoke only/);
    expect(bad(["smoke", "--max-concurrency", "0"])).toThrow(
      /--max-concurrency: expected an integer >= 1/,
    );
    expect(bad(["smoke", "--bogus"])).toThrow(UsageError);
    // parseArgs takes a value that starts with "--" only after "=".
    expect(bad(["smoke", "--server-args", "--max-loras 64"])).toThrow(/ambiguous/);
  });
});

describe("planScenario", () => {
  const options = parseCli(["ablations"], root, {}).plan;

  it("puts the issue's PEFT comparison in ablations: 32 × 32 rank-16 adapters, 128 + 128, at once", () => {
    const plan = planScenario("ablations", options);
    expect(plan.peft).toEqual({ point: "peft-batch", batch: 32 });
    const point = plan.points.find((p) => p.label === "peft-batch");
    if (point?.spec.kind !== "synthetic") throw new Error("no peft-batch point");
    const trace = generateTrace(point.spec);
    expect(new Set(trace.requests.map((r) => r.adapter)).size).toBe(32);
    expect(trace.adapters.every((a) => a.rank === 16)).toBe(true);
    expect(
      trace.requests.every((r) => r.arrivalS === 0 && r.inputLen === 128 && r.outputLen === 128),
    ).toBe(true);
    expect(plan.variants.map((v) => v.name)).toEqual(["base", "slora", "bmm", "no-unifymem"]);
  });

  it("sizes sweeps from the flags: requests = rate × duration", () => {
    const plan = planScenario("sweep-adapters", {
      ...options,
      adapters: [10, 20],
      rate: 5,
      durationS: 4,
    });
    const specs = plan.points.map((p) => (p.spec.kind === "synthetic" ? p.spec : null));
    expect(specs.map((s) => [s?.numAdapters, s?.numRequests])).toEqual([
      [10, 20],
      [20, 20],
    ]);
    expect(plan.points.map((p) => p.label)).toEqual(["n=10", "n=20"]);
    expect(plan.variants.find((v) => v.name === "base")?.points).toBe("first");
  });
});
