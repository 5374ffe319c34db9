// The tensors of adapter_model.safetensors against the config and the base model, by the
// shared rules (rules.ts): only LoRA A/B weights of targeted projections of existing
// layers, each once, in F32/F16/BF16, A [r, in] and B [out, r]; every one present.
import type { AdapterConfig } from "./config.ts";
import {
  type AdapterBase,
  AdapterRuleError,
  type LoraModule,
  printable,
  WEIGHT_DTYPES,
} from "./rules.ts";
import type { TensorEntry } from "./safetensors.ts";

const FILE = "adapter_model.safetensors";
// PEFT saves `base_model.model.` + the model's own names.
const LORA_NAME =
  /^(?:base_model\.model\.)?model\.layers\.([0-9]+)\.(self_attn|mlp)\.(q|k|v|o|gate|up|down)_proj\.lora_(A|B)\.weight$/;
const PARENT: Record<LoraModule, string> = {
  q: "self_attn",
  k: "self_attn",
  v: "self_attn",
  o: "self_attn",
  gate: "mlp",
  up: "mlp",
  down: "mlp",
};

/** One weight of a served adapter: `A` [r, in] or `B` [out, r] of a layer's projection. */
export interface LoraTensor {
  layer: number;
  module: LoraModule;
  side: "A" | "B";
  entry: TensorEntry;
}

/** The layer a name's digits give, or -1 when it is not below `numLayers`. */
function layerOf(digits: string, numLayers: number): number {
  const trimmed = digits.replace(/^0+/, "") || "0";
  const layer = trimmed.length <= 6 ? Number(trimmed) : Number.POSITIVE_INFINITY;
  return layer < numLayers ? layer : -1;
}

/**
 * Checks `tensors` (parseSafetensorsHeader's, sorted by name); returns every weight in the
 * canonical order: layer, then projection, then A before B.
 */
export function checkLoraTensors(
  tensors: readonly TensorEntry[],
  config: AdapterConfig,
  base: AdapterBase,
): LoraTensor[] {
  const found = new Map<string, LoraTensor>();
  for (const entry of tensors) {
    const name = printable(entry.name);
    const match = LORA_NAME.exec(entry.name);
    const module = match?.[3] as LoraModule | undefined;
    if (match === null || module === undefined || PARENT[module] !== match[2]) {
      throw new AdapterRuleError(
        "unexpected_tensor",
        `${FILE}: tensor ${name} is not a LoRA A or B weight of a supported projection`,
      );
    }
    if (!config.targets.includes(module)) {
      throw new AdapterRuleError(
        "unexpected_tensor",
        `${FILE}: tensor ${name} is for ${module}_proj, which target_modules does not list`,
      );
    }
    const layer = layerOf(match[1] as string, base.numLayers);
    if (layer === -1) {
      throw new AdapterRuleError(
        "shape_mismatch",
        `${FILE}: tensor ${name} is for a layer beyond the base model's ${base.numLayers}`,
      );
    }
    const side = match[4] as "A" | "B";
    const key = `${layer} ${module} ${side}`;
    if (found.has(key)) {
      throw new AdapterRuleError(
        "unexpected_tensor",
        `${FILE}: layer ${layer} ${module}_proj lora_${side} appears twice`,
      );
    }
    if (!(WEIGHT_DTYPES as readonly string[]).includes(entry.dtype)) {
      throw new AdapterRuleError(
        "unsupported_dtype",
        `${FILE}: tensor ${name} is ${entry.dtype}; use F32, F16 or BF16`,
      );
    }
    const [inFeatures, outFeatures] = base.modules[module];
    const expected = side === "A" ? [config.rank, inFeatures] : [outFeatures, config.rank];
    if (entry.shape.length !== 2 || entry.shape.some((d, i) => d !== expected[i])) {
      throw new AdapterRuleError(
        "shape_mismatch",
        `${FILE}: tensor ${name} has shape [${entry.shape.join(", ")}], expected [${expected.join(", ")}]`,
      );
    }
    found.set(key, { layer, module, side, entry });
  }
  const all: LoraTensor[] = [];
  for (let layer = 0; layer < base.numLayers; layer++) {
    for (const module of config.targets) {
      for (const side of ["A", "B"] as const) {
        const tensor = found.get(`${layer} ${module} ${side}`);
        if (tensor === undefined) {
          throw new AdapterRuleError(
            "missing_tensor",
            `${FILE}: no lora_${side} weight for layer ${layer} ${module}_proj`,
          );
        }
        all.push(tensor);
      }
    }
  }
  return all;
}
