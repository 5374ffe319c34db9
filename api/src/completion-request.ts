import { z } from "zod";
import { LorafleetFieldSchema } from "./lorafleet-field.ts";
import { samplingFields } from "./sampling-fields.ts";
import { oneOutputConstraint, structuredOutputFields } from "./structured-output-fields.ts";

const tokenIds = z.array(z.number().int().min(0)).min(1);

/**
 * POST /v1/completions as a client sends it: OpenAI's four prompt forms (text, texts, token
 * ids, lists of token ids); a list mixing texts and token-id lists is none of them, and
 * OpenAI refuses it too.
 */
export const CompletionRequestSchema = z
  .object({
    ...samplingFields,
    ...structuredOutputFields,
    prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
    /** the completions API's logprobs: how many top alternatives per token */
    logprobs: z.number().int().min(0).max(20).nullish(),
    echo: z
      .boolean()
      .nullish()
      .refine((echo) => echo !== true, "echo is not supported"),
    suffix: z
      .string()
      .nullish()
      .refine((suffix) => suffix == null || suffix === "", "suffix is not supported"),
    best_of: z
      .number()
      .int()
      .nullish()
      .refine((bestOf) => bestOf == null || bestOf === 1, "best_of is not supported"),
  })
  .superRefine(oneOutputConstraint);
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

/** What a backend's /v1/completions accepts: the client's body plus the gateway's `lorafleet`. */
export const BackendCompletionRequestSchema = CompletionRequestSchema.extend({
  lorafleet: LorafleetFieldSchema.nullish(),
});
