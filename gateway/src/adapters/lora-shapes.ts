import type { AdapterBase, LoraModule } from "@lorafleet/api";
import type { BaseModel } from "../admin/base-models.ts";

/** [in features, out features] of each projection in a Llama-family layer. */
function projectionDims(m: BaseModel, module: LoraModule): [number, number] {
  const q = m.num_attention_heads * m.head_dim;
  const kv = m.num_key_value_heads * m.head_dim;
  const dims: Record<LoraModule, [number, number]> = {
    q: [m.hidden_size, q],
    k: [m.hidden_size, kv],
    v: [m.hidden_size, kv],
    o: [q, m.hidden_size],
    gate: [m.hidden_size, m.intermediate_size],
    up: [m.hidden_size, m.intermediate_size],
    down: [m.intermediate_size, m.hidden_size],
  };
  return dims[module];
}

/** What an adapter must fit, for the shared adapter rules: `model`'s shapes, `maxRank`. */
export function adapterBase(model: BaseModel, maxRank: number): AdapterBase {
  return {
    numLayers: model.num_hidden_layers,
    modules: {
      q: projectionDims(model, "q"),
      k: projectionDims(model, "k"),
      v: projectionDims(model, "v"),
      o: projectionDims(model, "o"),
      gate: projectionDims(model, "gate"),
      up: projectionDims(model, "up"),
      down: projectionDims(model, "down"),
    },
    maxRank,
  };
}
