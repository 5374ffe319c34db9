// The shared adapter rules against api/fixtures/adapter-cases.json, the cases the
// executor's Python rules are held to as well (test_adapter_rules.py): the same verdict,
// to the word, for every one.
import { describe, expect, it } from "vitest";
import { type AdapterCase, adapterCases, caseFile } from "../../fixtures/adapter-cases.ts";
import { checkAdapter } from "./adapter.ts";
import { checkAdapterConfig } from "./config.ts";
import { AdapterRuleError } from "./rules.ts";
import { parseSafetensorsHeader, safetensorsHeaderEnd } from "./safetensors.ts";
import { checkLoraTensors } from "./tensors.ts";
import { WeightValues } from "./weights.ts";

/** The verdict of the TypeScript rules on a case, in the fixture's form. */
function verdict(c: AdapterCase): AdapterCase["expect"] {
  try {
    const { config } = checkAdapter(
      { config: caseFile(c.config), weights: caseFile(c.weights), pickle: c.pickle },
      adapterCases.base,
    );
    return { rank: config.rank, scale: config.scale, targets: config.targets };
  } catch (error) {
    if (!(error instanceof AdapterRuleError)) throw error;
    return { code: error.code, message: error.message };
  }
}

describe("the shared adapter rules, in TypeScript", () => {
  it.each(adapterCases.cases.map((c) => [c.name, c] as const))("%s", (_, c) => {
    expect(verdict(c)).toEqual(c.expect);
  });

  it("judges the weights alike however the data section is cut into pieces", () => {
    // the gateway streams a multipart upload's data past WeightValues in R2's chunks
    const served = adapterCases.cases.filter(
      (c) => !("code" in c.expect) || /weights/.test(c.expect.code),
    );
    expect(served.length).toBeGreaterThan(15);
    for (const c of served) {
      for (const size of [1, 3, 5, 64]) {
        const weights = caseFile(c.weights) as Uint8Array;
        const config = checkAdapterConfig(
          caseFile(c.config) as Uint8Array,
          adapterCases.base.maxRank,
        );
        const end = safetensorsHeaderEnd(weights, weights.length);
        const entries = parseSafetensorsHeader(weights.subarray(0, end), weights.length);
        const values = new WeightValues(
          checkLoraTensors(entries, config, adapterCases.base),
          config,
        );
        for (let at = end; at < weights.length; at += size) {
          values.add(weights.subarray(at, Math.min(at + size, weights.length)));
        }
        const inPieces = (() => {
          try {
            values.check();
            return null;
          } catch (error) {
            return (error as Error).message;
          }
        })();
        expect(inPieces, `${c.name} in pieces of ${size}`).toBe(
          "message" in c.expect ? c.expect.message : null,
        );
      }
    }
  });
});
