// The formats by --tool-call-parser name.
import type { CallFormat } from "../call-format.ts";
import { hermes } from "./hermes.ts";
import { llama3Json } from "./llama3-json.ts";
import { mistral } from "./mistral.ts";
import { smollm2 } from "./smollm2.ts";

export const CALL_FORMATS = {
  hermes,
  // Qwen 2.5 / 3 write Hermes' format (vLLM parses them with `hermes` too).
  qwen: hermes,
  smollm2,
  llama3_json: llama3Json,
  mistral,
} as const satisfies Record<string, CallFormat>;

export type CallFormatName = keyof typeof CALL_FORMATS;
export const CALL_FORMAT_NAMES = Object.keys(CALL_FORMATS) as CallFormatName[];
