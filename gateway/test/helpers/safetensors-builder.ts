import type { BaseModelSpec } from "./gateway-client.ts";

export type TensorSpec = { name: string; dtype: string; shape: number[] };

const dtypeBytes: Record<string, number> = { F32: 4, F16: 2, BF16: 2, I8: 1 };

/** A safetensors file whose tensors hold deterministic bytes, laid out back to back. */
export function buildSafetensors(
  tensors: TensorSpec[],
  header?: (h: Record<string, unknown>) => void,
): Uint8Array {
  const entries: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const t of tensors) {
    const size = t.shape.reduce((p, d) => p * d, 1) * (dtypeBytes[t.dtype] ?? 4);
    entries[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  header?.(entries);
  const json = new TextEncoder().encode(JSON.stringify(entries));
  const out = new Uint8Array(8 + json.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  // Distinct bytes that stay small finite weights (the adapter rules refuse NaN, inf
  // and values beyond fp16's range): an F32's low bytes vary, its exponent is 2^-4..
  let at = 8 + json.length;
  for (const t of tensors) {
    const size = dtypeBytes[t.dtype] ?? 4;
    const end = at + t.shape.reduce((p, d) => p * d, 1) * size;
    for (let i = at; i < end; i += size) {
      if (size === 4) view.setUint32(i, 0x3d800000 | (i % 251), true);
      else if (size === 2) view.setUint16(i, 0x2c00 | (i % 251), true);
      else out[i] = i % 251;
    }
    at = end;
  }
  return out;
}

const modules = {
  q_proj: "self_attn",
  k_proj: "self_attn",
  v_proj: "self_attn",
  o_proj: "self_attn",
  gate_proj: "mlp",
  up_proj: "mlp",
  down_proj: "mlp",
} as const;
type Module = keyof typeof modules;

/** [in, out] per projection, as in the gateway's checker, written out independently. */
function dims(m: BaseModelSpec, module: Module): [number, number] {
  const headDim = m.hidden_size / m.num_attention_heads;
  const q = m.num_attention_heads * headDim;
  const kv = m.num_key_value_heads * headDim;
  if (module === "q_proj") return [m.hidden_size, q];
  if (module === "k_proj" || module === "v_proj") return [m.hidden_size, kv];
  if (module === "o_proj") return [q, m.hidden_size];
  if (module === "down_proj") return [m.intermediate_size, m.hidden_size];
  return [m.hidden_size, m.intermediate_size];
}

/** The tensor list PEFT saves for a LoRA on every layer of `model`. */
export function loraTensors(
  model: BaseModelSpec,
  rank: number,
  targets: Module[],
  dtype = "F32",
): TensorSpec[] {
  const out: TensorSpec[] = [];
  for (let layer = 0; layer < model.num_hidden_layers; layer += 1) {
    for (const module of targets) {
      const [inF, outF] = dims(model, module);
      const prefix = `base_model.model.model.layers.${layer}.${modules[module]}.${module}`;
      out.push({ name: `${prefix}.lora_A.weight`, dtype, shape: [rank, inF] });
      out.push({ name: `${prefix}.lora_B.weight`, dtype, shape: [outF, rank] });
    }
  }
  return out;
}

export type AdapterFiles = { config: string; weights: Uint8Array };

/** A valid PEFT LoRA adapter (config + weights) for `model`. */
export function buildAdapter(
  model: BaseModelSpec,
  options: { rank?: number; targets?: Module[]; config?: Record<string, unknown> } = {},
): AdapterFiles {
  const rank = options.rank ?? 4;
  const targets = options.targets ?? ["q_proj", "v_proj"];
  const config = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: model.name,
    r: rank,
    lora_alpha: 2 * rank,
    lora_dropout: 0,
    target_modules: targets,
    bias: "none",
    fan_in_fan_out: false,
    modules_to_save: null,
    rank_pattern: {},
    alpha_pattern: {},
    layers_to_transform: null,
    use_dora: false,
    ...options.config,
  };
  return {
    config: JSON.stringify(config),
    weights: buildSafetensors(loraTensors(model, rank, targets)),
  };
}
