// adapter_config.json against the shared rules (rules.ts).
import {
  AdapterRuleError,
  isObject,
  LORA_MODULES,
  type LoraModule,
  MAX_CONFIG_BYTES,
  MAX_JSON_DEPTH,
  MAX_SCALE,
  nestedTooDeep,
  printable,
  REFUSED_FEATURES,
  utf8,
} from "./rules.ts";

/** What a served adapter's config says. */
export interface AdapterConfig {
  rank: number;
  alpha: number;
  useRslora: boolean;
  /** alpha / r, or alpha / √r with rsLoRA: what B is multiplied by */
  scale: number;
  /** canonical order */
  targets: LoraModule[];
  /** the parsed file, for fields a caller checks on its own (the gateway's base model) */
  raw: Record<string, unknown>;
}

const PROJECTIONS = LORA_MODULES.map((m) => `${m}_proj`).join(", ");

function bad(code: string, why: string): AdapterRuleError {
  return new AdapterRuleError(code, `adapter_config.json: ${why}`);
}

/** Set: anything but absent, null, false, 0, "", [] or {}. */
function isSet(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === 0 || value === "") {
    return false;
  }
  if (Array.isArray(value)) return value.length > 0;
  return !isObject(value) || Object.keys(value).length > 0;
}

/**
 * Checks adapter_config.json's bytes; throws AdapterRuleError with the first rule broken.
 *
 * @example checkAdapterConfig(bytes, 64) // { rank: 8, alpha: 16, scale: 2, targets: ["q", "v"], ... }
 */
export function checkAdapterConfig(bytes: Uint8Array, maxRank: number): AdapterConfig {
  if (bytes.byteLength > MAX_CONFIG_BYTES) {
    throw new AdapterRuleError(
      "adapter_too_large",
      `adapter_config.json is over ${MAX_CONFIG_BYTES} bytes`,
    );
  }
  const text = utf8(bytes);
  if (text === null) throw bad("adapter_config_invalid_json", "not UTF-8");
  if (nestedTooDeep(text)) {
    throw bad("adapter_config_invalid_json", `nested deeper than ${MAX_JSON_DEPTH} levels`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad("adapter_config_invalid_json", "not valid JSON");
  }
  if (!isObject(raw)) throw bad("adapter_config_invalid", "not a JSON object");
  if (raw.peft_type !== "LORA") throw bad("adapter_config_invalid", 'peft_type must be "LORA"');
  for (const feature of REFUSED_FEATURES) {
    if (isSet(raw[feature])) {
      throw bad("unsupported_adapter_feature", `${feature} is set; it is not supported`);
    }
  }
  if (Object.hasOwn(raw, "bias") && raw.bias !== "none") {
    throw bad(
      "unsupported_adapter_feature",
      'bias must be "none" (bias training is not supported)',
    );
  }
  const rank = raw.r;
  if (typeof rank !== "number" || !Number.isInteger(rank) || rank < 1) {
    throw bad("adapter_config_invalid", "r must be a whole number of at least 1");
  }
  if (rank > maxRank) throw bad("rank_too_large", `r must be at most ${maxRank}`);
  const alpha = raw.lora_alpha;
  if (typeof alpha !== "number" || !Number.isFinite(alpha) || alpha <= 0) {
    throw bad("adapter_config_invalid", "lora_alpha must be a number above 0");
  }
  const useRslora = Object.hasOwn(raw, "use_rslora") ? raw.use_rslora : false;
  if (typeof useRslora !== "boolean") {
    throw bad("adapter_config_invalid", "use_rslora must be true or false");
  }
  const scale = useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
  if (!(scale > 0 && scale <= MAX_SCALE)) {
    throw bad(
      "scale_out_of_range",
      `the scale lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) must be above 0 and at most ${MAX_SCALE}`,
    );
  }
  return { rank, alpha, useRslora, scale, targets: targets(raw), raw };
}

function targets(raw: Record<string, unknown>): LoraModule[] {
  const spec = raw.target_modules;
  if (spec === "all-linear") return [...LORA_MODULES];
  if (!Array.isArray(spec) || spec.length === 0 || !spec.every((m) => typeof m === "string")) {
    throw bad(
      "adapter_config_invalid",
      'target_modules must be "all-linear" or a non-empty list of module names (regular expressions are not supported)',
    );
  }
  const chosen = new Set<string>();
  for (const name of spec as string[]) {
    const module = name.endsWith("_proj") ? name.slice(0, -5) : "";
    if (!(LORA_MODULES as readonly string[]).includes(module)) {
      throw bad(
        "unsupported_target_module",
        `target module ${printable(name)} is not one of ${PROJECTIONS}`,
      );
    }
    chosen.add(module);
  }
  return LORA_MODULES.filter((m) => chosen.has(m));
}
