import { type AdapterConfig, MAX_CONFIG_BYTES } from "@lorafleet/api";

/** The projections backends can apply LoRA to (Llama-family names). */
export const supportedTargetModules = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;
export type TargetModule = (typeof supportedTargetModules)[number];

/**
 * An adapter_config.json the shared adapter rules accepted (@lorafleet/api
 * `checkAdapterConfig`: the backends' registration and staging apply the same rules),
 * with the base model it names: the gateway's own concern (upload.ts checks it).
 */
export type LoraConfig = AdapterConfig & { targetModules: TargetModule[]; baseModel: string };

/** Largest adapter_config.json accepted (the shared rules'). */
export const maxConfigBytes = MAX_CONFIG_BYTES;
