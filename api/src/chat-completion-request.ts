import { z } from "zod";
import { LorafleetFieldSchema } from "./lorafleet-field.ts";
import { samplingFields } from "./sampling-fields.ts";
import { oneOutputConstraint, structuredOutputFields } from "./structured-output-fields.ts";
import { checkToolChoice, toolFields } from "./tool-fields.ts";
import { unsupported } from "./unsupported-parameter.ts";

const textPart = z.object({ type: z.literal("text"), text: z.string() });

/** A call as an assistant message carries it back in (arguments: the JSON text it was given). */
const functionCall = z.object({ name: z.string(), arguments: z.string() });

const MessageSchema = z.object({
  // "function": the legacy form of a tool result (with `name`)
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
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
  /** an assistant's calls (content may then be null) */
  tool_calls: z
    .array(z.object({ id: z.string(), type: z.literal("function"), function: functionCall }))
    .nullish(),
  /** which call a `tool` message answers */
  tool_call_id: z.string().nullish(),
  /** the legacy form of one assistant call */
  function_call: functionCall.nullish(),
});

/** POST /v1/chat/completions as a client sends it. Unknown fields are ignored, as OpenAI-compatible servers do. */
export const ChatCompletionRequestSchema = z
  .object({
    ...samplingFields,
    messages: z.array(MessageSchema).min(1),
    max_completion_tokens: z.number().int().min(1).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.number().int().min(0).max(20).nullish(),
    add_generation_prompt: z.boolean().nullish(),
    ...toolFields,
    ...structuredOutputFields,
    modalities: unsupported(
      (v) => Array.isArray(v) && v.every((m) => m === "text"),
      "output modalities other than text",
    ),
    audio: unsupported(() => false, "audio output"),
    prediction: unsupported(() => false, "predicted outputs (prediction)"),
  })
  .superRefine((body, ctx) => {
    checkToolChoice(body, ctx);
    oneOutputConstraint(body, ctx);
  });
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;

/** What a backend's /v1/chat/completions accepts: the client's body plus the gateway's `lorafleet`. */
export const BackendChatCompletionRequestSchema = ChatCompletionRequestSchema.extend({
  lorafleet: LorafleetFieldSchema.nullish(),
});
