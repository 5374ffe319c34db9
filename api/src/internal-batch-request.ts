import { z } from "zod";
import { inferenceEndpoints } from "./inference-endpoint.ts";
import { LorafleetFieldSchema } from "./lorafleet-field.ts";

/**
 * POST /internal/batch, the gateway's batch call to a backend: many requests in one call,
 * answered as NDJSON events. Each `body` is checked on its own (with the endpoint's
 * schema, `requestSchemas`), so one bad request fails alone, not the whole call.
 */
export const InternalBatchRequestSchema = z.object({
  requests: z
    .array(
      z.object({
        /** the caller's id, echoed in its event */
        id: z.string().min(1).max(200),
        /** which endpoint's body `body` is */
        endpoint: z.enum(inferenceEndpoints),
        tenant: z.string().min(1).max(200),
        adapter: LorafleetFieldSchema.shape.adapter,
        deadline_ms: LorafleetFieldSchema.shape.deadline_ms,
        cache_salt: LorafleetFieldSchema.shape.cache_salt,
        body: z.record(z.string(), z.unknown()),
      }),
    )
    .min(1)
    .max(4096),
});
export type InternalBatchRequest = z.infer<typeof InternalBatchRequestSchema>;
