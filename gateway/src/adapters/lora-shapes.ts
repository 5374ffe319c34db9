import type { BaseModel } from "../admin/base-models.ts";
import { adapterError } from "./adapter-error.ts";
import type { LoraConfig, TargetModule } from "./lora-config.ts";
import type { TensorInfo } from "./safetensors.ts";

/** The dtypes backends load adapter weights from. */
const weightDtypes = new Set(["F32", "F16", "BF16"]);

const tensorName =
  /^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.lora_(A|B)\.weight$/;

const parentOf: Record<TargetModule, "self_attn" | "mlp"> = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
};

/** [in features, out features] of each projection in a Llama-family layer. */
export function projectionDims(m: BaseModel, module: TargetModule): [number, number] {
  const q = m.num_attention_heads * m.head_dim;
  const kv = m.num_key_value_heads * m.head_dim;
  const dims: Record<TargetModule, [number, number]> = {
    q_proj: [m.hidden_size, q],
    k_proj: [m.hidden_size, kv],
    v_proj: [m.hidden_size, kv],
    o_proj: [q, m.hidden_size],
    gate_proj: [m.hidden_size, m.intermediate_size],
    up_proj: [m.hidden_size, m.intermediate_size],
    down_proj: [m.intermediate_size, m.hidden_size],
  };
  return dims[module];
}

/**
 * Checks a PEFT LoRA state dict against the base model: only lora_A/lora_B of
 * the configured target modules, A = [r, in] and B = [out, r] for that
 * projection, and every layer x target module present exactly as a pair.
 */
export function checkLoraTensors(
  tensors: TensorInfo[],
  config: LoraConfig,
  model: BaseModel,
): void {
  const bad = (code: string, why: string) =>
    adapterError(code, `adapter_model.safetensors: ${why}`);
  const seen = new Set<string>();
  for (const t of tensors) {
    const match = t.name.match(tensorName);
    if (!match)
      throw bad(
        "unexpected_tensor",
        `tensor ${t.name} is not a LoRA A/B weight of a supported projection`,
      );
    const [, layerText, parent, moduleText, side] = match;
    const module = moduleText as TargetModule;
    const layer = Number(layerText);
    if (parentOf[module] !== parent)
      throw bad("unexpected_tensor", `tensor ${t.name}: ${module} is not under ${parent}`);
    if (!config.targetModules.includes(module)) {
      throw bad(
        "unexpected_tensor",
        `tensor ${t.name} is for ${module}, which target_modules does not list`,
      );
    }
    if (layer >= model.num_hidden_layers) {
      throw bad(
        "shape_mismatch",
        `tensor ${t.name} is for layer ${layer}; ${model.name} has ${model.num_hidden_layers} layers`,
      );
    }
    if (!weightDtypes.has(t.dtype))
      throw bad("unsupported_dtype", `tensor ${t.name} is ${t.dtype}; use F32, F16 or BF16`);
    const [inFeatures, outFeatures] = projectionDims(model, module);
    const expected = side === "A" ? [config.rank, inFeatures] : [outFeatures, config.rank];
    if (t.shape.length !== 2 || t.shape[0] !== expected[0] || t.shape[1] !== expected[1]) {
      throw bad(
        "shape_mismatch",
        `tensor ${t.name} has shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(expected)} (rank ${config.rank}, ${model.name})`,
      );
    }
    seen.add(`${layer}.${module}.${side}`);
  }
  for (let layer = 0; layer < model.num_hidden_layers; layer += 1) {
    for (const module of config.targetModules) {
      for (const side of ["A", "B"]) {
        if (!seen.has(`${layer}.${module}.${side}`)) {
          throw bad("missing_tensor", `no lora_${side} weight for layer ${layer} ${module}`);
        }
      }
    }
  }
}
