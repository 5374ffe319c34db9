import { z } from "zod";
import { type InferenceEndpoint, requestSchemas } from "./inference-endpoint.ts";

/**
 * One line of an OpenAI Batch API input file for `endpoint`:
 * `{"custom_id", "method": "POST", "url": <endpoint>, "body": {...}}`, the body checked
 * exactly as the endpoint checks it, except that a batch line cannot stream.
 *
 * @example batchInputLineSchema("/v1/completions").parse({ custom_id: "a", method: "POST", url: "/v1/completions", body: { model: "m", prompt: "hi" } })
 */
export function batchInputLineSchema(endpoint: InferenceEndpoint) {
  return z.object({
    custom_id: z.string().min(1),
    method: z.literal("POST", { error: 'must be "POST"' }),
    url: z.literal(endpoint, { error: `must be the batch's endpoint ${endpoint}` }),
    body: requestSchemas[endpoint].safeExtend({
      stream: z
        .boolean()
        .nullish()
        .refine((stream) => stream !== true, "streaming is not available in batches"),
    }),
  });
}
