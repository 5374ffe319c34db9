// The `lorafleet` field the gateway adds to every body it forwards to a backend.
import { z } from "zod";

/**
 * The gateway's routing envelope: the tenant (the backend's fair-share unit), the request
 * id, the base model it resolved, the deadline, for an adapter where to fetch its two
 * files through short-lived signed URLs (`sha256` is that of adapter_model.safetensors),
 * and the prefix cache's salt. Built by gateway/src/proxy/backend-body.ts, read by
 * gpu-backend/src/server.
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
  /**
   * Only requests with the same salt share the backend's cached KV (a prefix cache is a
   * timing side channel: vLLM CVE-2025-46570). Set by the gateway, never by a client;
   * absent: the tenant.
   */
  cache_salt: z.string().min(1).max(200).nullish(),
});
export type LorafleetField = z.infer<typeof LorafleetFieldSchema>;
