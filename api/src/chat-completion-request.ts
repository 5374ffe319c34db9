import { z } from "zod";
import { LorafleetFieldSchema } from "./lorafleet-field.ts";
import { samplingFields } from "./sampling-fields.ts";
import { isEmptyList, unsupported } from "./unsupported-parameter.ts";

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

/** POST /v1/chat/completions as a client sends it. Unknown fields are ignored, as OpenAI-compatible servers do. */
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

/** What a backend's /v1/chat/completions accepts: the client's body plus the gateway's `lorafleet`. */
export const BackendChatCompletionRequestSchema = ChatCompletionRequestSchema.extend({
  lorafleet: LorafleetFieldSchema.nullish(),
});
