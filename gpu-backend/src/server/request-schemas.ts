// The request bodies the server accepts, as zod schemas: OpenAI's chat and completion
// parameters, vLLM's extra sampling fields and adapter endpoints, and the gateway's
// `lorafleet` field. Unknown fields are ignored, as OpenAI-compatible servers do.
import { z } from "zod";

/**
 * The gateway's routing envelope (gateway/src/openai/inference-routes.ts `backendBody`):
 * the tenant, and for an adapter where to fetch its two files through short-lived signed
 * URLs; `sha256` is that of adapter_model.safetensors.
 */
export const LorafleetFieldSchema = z.object({
  tenant: z.string().min(1).max(200),
  request_id: z.string().max(200).nullish(),
  base_model: z.string().min(1).nullish(),
  adapter: z
    .object({
      id: z.string().min(1).max(200),
      name: z.string().min(1).max(200),
      rank: z.number().int().positive().nullish(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/, "sha256 must be 64 lowercase hex digits"),
      config_url: z.url(),
      weights_url: z.url(),
    })
    .nullable()
    .default(null),
  /** absolute epoch ms after which the request is dropped (S-LoRA early abort) */
  deadline_ms: z.number().int().positive().nullish(),
});
export type LorafleetField = z.infer<typeof LorafleetFieldSchema>;

const stop = z
  .union([z.string(), z.array(z.string()).max(16)])
  .nullish()
  .transform((value) => (value == null ? [] : typeof value === "string" ? [value] : value));

/**
 * An OpenAI parameter this backend does not implement: only its "off" values pass, anything
 * else is a 400 `unsupported_parameter` naming it (a client asking for tools or JSON mode
 * must not get free text back as if it had been honoured).
 */
const unsupported = (isOff: (value: unknown) => boolean, what: string) =>
  z
    .unknown()
    .refine((value) => value == null || isOff(value), {
      message: `${what} is not supported by this backend`,
      params: { code: "unsupported_parameter" },
    })
    .optional();
const isEmptyList = (value: unknown) => Array.isArray(value) && value.length === 0;
const isEmptyObject = (value: unknown) =>
  typeof value === "object" &&
  value !== null &&
  !Array.isArray(value) &&
  Object.keys(value).length === 0;

/** Sampling fields shared by both endpoints. */
const samplingFields = {
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
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  user: z.string().nullish(),
  // vLLM's extra sampling parameters
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  ignore_eos: z.boolean().nullish(),
  stop_token_ids: z.array(z.number().int().min(0)).max(64).nullish(),
  lorafleet: LorafleetFieldSchema.nullish(),
  logit_bias: unsupported(isEmptyObject, "logit_bias"),
};

const textPart = z.object({ type: z.literal("text"), text: z.string() });

const MessageSchema = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  content: z
    .union([z.string(), z.array(textPart)])
    .nullish()
    .transform((content) =>
      content == null
        ? ""
        : typeof content === "string"
          ? content
          : content.map((p) => p.text).join(""),
    ),
  name: z.string().nullish(),
});

export const ChatCompletionRequestSchema = z.object({
  ...samplingFields,
  messages: z.array(MessageSchema).min(1),
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  add_generation_prompt: z.boolean().nullish(),
  tools: unsupported(isEmptyList, "tool calling (tools)"),
  tool_choice: unsupported((v) => v === "none" || v === "auto", "tool_choice"),
  functions: unsupported(isEmptyList, "function calling (functions)"),
  function_call: unsupported((v) => v === "none" || v === "auto", "function_call"),
  response_format: unsupported(
    (v) => typeof v === "object" && (v as { type?: unknown }).type === "text",
    "response_format other than {type: text}",
  ),
  modalities: unsupported(
    (v) => Array.isArray(v) && v.every((m) => m === "text"),
    "output modalities other than text",
  ),
  audio: unsupported(() => false, "audio output"),
  prediction: unsupported(() => false, "predicted outputs (prediction)"),
});
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

const tokenIds = z.array(z.number().int().min(0)).min(1);

export const CompletionRequestSchema = z.object({
  ...samplingFields,
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
});
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

/** vLLM's POST /v1/load_lora_adapter */
export const LoadAdapterRequestSchema = z.object({
  lora_name: z.string().min(1).max(200),
  lora_path: z.string().min(1).nullish(),
});

/** vLLM's POST /v1/unload_lora_adapter */
export const UnloadAdapterRequestSchema = z.object({
  lora_name: z.string().min(1).max(200),
});

/** POST /internal/batch: many requests in one call, answered as NDJSON events. */
export const BatchRequestSchema = z.object({
  requests: z
    .array(
      z.object({
        /** the caller's id, echoed in its event */
        id: z.string().min(1).max(200),
        /** which endpoint's body `body` is */
        endpoint: z.enum(["/v1/chat/completions", "/v1/completions"]),
        tenant: z.string().min(1).max(200),
        adapter: LorafleetFieldSchema.shape.adapter,
        deadline_ms: LorafleetFieldSchema.shape.deadline_ms,
        body: z.record(z.string(), z.unknown()),
      }),
    )
    .min(1)
    .max(4096),
});
export type BatchRequest = z.infer<typeof BatchRequestSchema>;
