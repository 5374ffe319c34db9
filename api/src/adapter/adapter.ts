// A whole adapter against the shared rules (rules.ts): its config, then its weights'
// header, tensors and values.
import { type AdapterConfig, checkAdapterConfig } from "./config.ts";
import { type AdapterBase, AdapterRuleError } from "./rules.ts";
import { parseSafetensorsHeader, safetensorsHeaderEnd } from "./safetensors.ts";
import { checkLoraTensors, type LoraTensor } from "./tensors.ts";
import { WeightValues } from "./weights.ts";

/** A PEFT directory's two files (null: absent), and whether a pickle stands in for the weights. */
export interface AdapterFiles {
  config: Uint8Array | null;
  weights: Uint8Array | null;
  /** adapter_model.bin is there */
  pickle: boolean;
}

/** What the rules accepted. */
export interface CheckedAdapter {
  config: AdapterConfig;
  /** canonical order */
  tensors: LoraTensor[];
}

/** The refusal of a directory without the config. */
export function missingConfig(): AdapterRuleError {
  return new AdapterRuleError("missing_file", "adapter_config.json is missing");
}

/** The refusal of a directory without adapter_model.safetensors (a pickle is named as such). */
export function missingWeights(pickle: boolean): AdapterRuleError {
  return pickle
    ? new AdapterRuleError(
        "pickle_not_accepted",
        "adapter_model.bin is a pickle; only adapter_model.safetensors is accepted",
      )
    : new AdapterRuleError("missing_file", "adapter_model.safetensors is missing");
}

/**
 * Checks an adapter held in memory; throws AdapterRuleError with the first rule broken.
 *
 * @example checkAdapter({ config, weights, pickle: false }, base).config.scale // 2
 */
export function checkAdapter(files: AdapterFiles, base: AdapterBase): CheckedAdapter {
  if (files.config === null) throw missingConfig();
  const config = checkAdapterConfig(files.config, base.maxRank);
  if (files.weights === null) throw missingWeights(files.pickle);
  const weights = files.weights;
  const headerEnd = safetensorsHeaderEnd(weights, weights.byteLength);
  const entries = parseSafetensorsHeader(weights.subarray(0, headerEnd), weights.byteLength);
  const tensors = checkLoraTensors(entries, config, base);
  const values = new WeightValues(tensors, config);
  values.add(weights.subarray(headerEnd));
  values.check();
  return { config, tensors };
}
