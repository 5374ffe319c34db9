import type { Principal } from "./auth/principal.ts";
import type { BatchRunner } from "./batches/batch-runner.ts";
import type { TenantLimiter } from "./limits/tenant-limiter.ts";

/** The Worker's bindings, as declared in wrangler.toml plus its secrets. */
export type Env = {
  DB: D1Database;
  CACHE: KVNamespace;
  FILES: R2Bucket;
  LIMITER: DurableObjectNamespace<TenantLimiter>;
  BATCHES: DurableObjectNamespace<BatchRunner>;
  /** Secret: bearer token of the admin API. */
  ADMIN_TOKEN: string;
  /** Secret: HMAC key of the signed adapter download URLs. */
  URL_SIGNING_KEY: string;
  /** Secret: sent to backends as `authorization: Bearer ...`. */
  BACKEND_SECRET: string;
  /** Origin written into signed URLs; empty means the serving request's origin. */
  PUBLIC_URL?: string;
};

/** Per-request values set by middleware. */
export type Variables = {
  /** The client's `x-request-id` (when sane) or a new UUID: a label, echoed and sent on, never a key. */
  requestId: string;
  /**
   * The gateway's own id of this request (`req_…`): the key of its usage row and of its
   * limiter reservation, so no client can choose, reuse or pre-claim it.
   */
  requestKey: string;
  startedAt: number;
  /** Milliseconds spent waiting on a backend, subtracted from the gateway's own time. */
  upstreamMs: number;
  principal: Principal;
};

export type AppEnv = { Bindings: Env; Variables: Variables };
