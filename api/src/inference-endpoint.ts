import type { z } from "zod";
import {
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
} from "./chat-completion-request.ts";
import { type CompletionRequest, CompletionRequestSchema } from "./completion-request.ts";

/** The two generation endpoints, as the public API, the Batch API and /internal/batch name them. */
export const inferenceEndpoints = ["/v1/chat/completions", "/v1/completions"] as const;
export type InferenceEndpoint = (typeof inferenceEndpoints)[number];

/** A validated body of either endpoint. */
export type InferenceRequest = ChatCompletionRequest | CompletionRequest;

/**
 * Each endpoint's body as a client sends it.
 *
 * @example requestSchemas["/v1/completions"].parse({ model: "m", prompt: "hi" })
 */
export const requestSchemas = {
  "/v1/chat/completions": ChatCompletionRequestSchema,
  "/v1/completions": CompletionRequestSchema,
} as const satisfies Record<InferenceEndpoint, z.ZodType<InferenceRequest>>;
