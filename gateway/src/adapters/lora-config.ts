import { adapterError } from "./adapter-error.ts";

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

export type LoraConfig = {
  rank: number;
  alpha: number;
  targetModules: TargetModule[];
  baseModel: string;
};

/** Largest adapter_config.json accepted. */
export const maxConfigBytes = 64 * 1024;

const isEmpty = (v: unknown) =>
  v === undefined ||
  v === null ||
  (Array.isArray(v) && v.length === 0) ||
  (typeof v === "object" && Object.keys(v).length === 0);

/**
 * Reads a PEFT adapter_config.json and refuses what the backends cannot serve
 * (other PEFT types, DoRA, per-module ranks, extra trained modules, regex
 * target modules, biases).
 *
 * @example parseLoraConfig('{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj"],"base_model_name_or_path":"m"}')
 */
export function parseLoraConfig(text: string): LoraConfig {
  const bad = (code: string, why: string) => adapterError(code, `adapter_config.json: ${why}`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(text);
  } catch {
    throw bad("adapter_config_invalid_json", "not valid JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw bad("adapter_config_invalid", "not a JSON object");
  if (raw.peft_type !== "LORA")
    throw bad(
      "adapter_config_invalid",
      `peft_type must be "LORA", got ${JSON.stringify(raw.peft_type)}`,
    );
  if (!Number.isSafeInteger(raw.r) || (raw.r as number) < 1)
    throw bad("adapter_config_invalid", "r must be a positive integer");
  if (typeof raw.lora_alpha !== "number" || !(raw.lora_alpha > 0)) {
    throw bad("adapter_config_invalid", "lora_alpha must be a positive number");
  }
  if (typeof raw.base_model_name_or_path !== "string" || raw.base_model_name_or_path === "") {
    throw bad("adapter_config_invalid", "base_model_name_or_path must name the base model");
  }
  if (!Array.isArray(raw.target_modules) || raw.target_modules.length === 0) {
    throw bad(
      "adapter_config_invalid",
      "target_modules must be a non-empty list of module names (regex strings are not supported)",
    );
  }
  for (const module of raw.target_modules) {
    if (!supportedTargetModules.includes(module)) {
      throw bad(
        "unsupported_target_module",
        `target module ${JSON.stringify(module)} is not one of ${supportedTargetModules.join(", ")}`,
      );
    }
  }
  if (raw.use_dora === true)
    throw bad("unsupported_adapter_feature", "DoRA (use_dora) is not supported");
  if (raw.bias !== undefined && raw.bias !== "none")
    throw bad("unsupported_adapter_feature", 'bias must be "none"');
  if (raw.fan_in_fan_out === true)
    throw bad("unsupported_adapter_feature", "fan_in_fan_out is not supported");
  for (const field of ["rank_pattern", "alpha_pattern", "modules_to_save", "layers_to_transform"]) {
    if (!isEmpty(raw[field])) throw bad("unsupported_adapter_feature", `${field} is not supported`);
  }
  return {
    rank: raw.r as number,
    alpha: raw.lora_alpha,
    targetModules: [...new Set(raw.target_modules as TargetModule[])],
    baseModel: raw.base_model_name_or_path,
  };
}
