// The one set of rules a LoRA adapter must meet to be served, for every place that checks
// one: the gateway's upload, the backend's registration and the executor's staging
// (gpu-backend/executor/lorafleet_executor/model/adapter_rules.py checks the same rules
// in Python; api/fixtures/adapter-cases.json holds cases both must judge alike, to the
// word). An adapter is refused with the first rule it breaks, in this order:
//
//   adapter_config.json   size, UTF-8, nesting, JSON, an object, peft_type LORA, no
//                         refused PEFT feature, bias "none", r a whole number in
//                         [1, max rank], lora_alpha > 0 and finite, use_rslora a boolean,
//                         scale alpha/r (alpha/√r with rsLoRA) in (0, MAX_SCALE],
//                         target_modules "all-linear" or a list of the seven projections
//   adapter_model.safetensors  present (a pickle is refused), the 8-byte length, a header
//                         of at most 8 MiB, UTF-8 JSON object, each entry (by name) with a
//                         known dtype, a shape, data_offsets spanning exactly its bytes,
//                         the entries tiling the data; then each tensor (by name) a LoRA A
//                         or B of a targeted projection of an existing layer, once, in
//                         F32/F16/BF16, of shape A [r, in] / B [out, r]; every one present
//   weights               (layer, projection, A then B) finite, |A| and |B|·scale at most
//                         MAX_WEIGHT
//
// Each refusal is an AdapterRuleError: a code (the gateway's error code) and a message
// naming the file and the problem, with no path in it, the same wherever it is raised.

/** The projections an adapter may target, in the canonical order (PROTOCOL.md). */
export const LORA_MODULES = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type LoraModule = (typeof LORA_MODULES)[number];

export const MAX_CONFIG_BYTES = 64 * 1024;
export const MAX_HEADER_BYTES = 8 * 1024 * 1024;
/** JSON nested deeper than this is refused before it is parsed */
export const MAX_JSON_DEPTH = 64;
/** the largest scale (alpha/r, or alpha/√r) served: beyond it the adapter's output swamps the model's */
export const MAX_SCALE = 1024;
/** fp16's largest finite value: A and B·scale must fit the narrowest pool dtype */
export const MAX_WEIGHT = 65504;
/** the dtypes adapter weights may come in */
export const WEIGHT_DTYPES = ["F32", "F16", "BF16"] as const;

/**
 * adapter_config.json fields that change what an adapter computes and that no backend
 * implements: one that is set (anything but absent, null, false, 0, "", [] or {}) is
 * refused by name, in this order.
 */
export const REFUSED_FEATURES = [
  "use_dora",
  "lora_bias",
  "modules_to_save",
  "rank_pattern",
  "alpha_pattern",
  "layers_to_transform",
  "layer_replication",
  "exclude_modules",
  "trainable_token_indices",
  "target_parameters",
  "use_qalora",
  "alora_invocation_tokens",
  "fan_in_fan_out",
] as const;

/** The base model an adapter must fit, and the largest rank served. */
export interface AdapterBase {
  numLayers: number;
  /** [in, out] features of each projection */
  modules: Record<LoraModule, readonly [number, number]>;
  maxRank: number;
}

/** An adapter broke a rule: `code` names the rule (the gateway's error code). */
export class AdapterRuleError extends Error {
  override readonly name = "AdapterRuleError";
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Text from the adapter's files, safe to put in a message and the same in every language:
 * letters, digits and `_ . -` kept, any other character `?`, at most 80 characters.
 */
export function printable(text: string): string {
  const chars = [...text];
  const kept = chars.slice(0, 80).map((c) => (/^[A-Za-z0-9_.-]$/.test(c) ? c : "?"));
  return kept.join("") + (chars.length > 80 ? "..." : "");
}

/** Whether JSON `text` nests arrays and objects deeper than MAX_JSON_DEPTH (strings skipped). */
export function nestedTooDeep(text: string): boolean {
  let depth = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (escaped) escaped = false;
      else if (c === 0x5c) escaped = true;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > MAX_JSON_DEPTH) return true;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return false;
}

/** UTF-8 `bytes` as text (a leading BOM dropped), or null when they are not UTF-8. */
export function utf8(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return null;
  }
}

/** A JSON object (not an array, not null). */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
