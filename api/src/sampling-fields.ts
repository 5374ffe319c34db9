import { z } from "zod";
import { isEmptyObject, unsupported } from "./unsupported-parameter.ts";

const stop = z
  .union([z.string(), z.array(z.string()).max(16)])
  .nullish()
  .transform((value) => (value == null ? [] : typeof value === "string" ? [value] : value));

/** The fields chat and completion requests share: OpenAI's sampling parameters and vLLM's extras. */
export const samplingFields = {
  model: z.string().min(1),
  n: z.number().int().min(1).max(16).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z
    .object({
      include_usage: z.boolean().nullish(),
      // vLLM's: usage (so far) in every chunk, not only in the last one; the gateway asks
      // for it to bill a stream cut short by what it relayed
      continuous_usage_stats: z.boolean().nullish(),
    })
    .nullish(),
  user: z.string().nullish(),
  // vLLM's extra sampling parameters
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  ignore_eos: z.boolean().nullish(),
  stop_token_ids: z.array(z.number().int().min(0)).max(64).nullish(),
  logit_bias: unsupported(isEmptyObject, "logit_bias"),
};
