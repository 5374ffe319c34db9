import type { LorafleetFieldSchema } from "@lorafleet/api";
import type { z } from "zod";
import type { AdapterMeta } from "../adapters/adapter-resolver.ts";
import { type AdapterFile, signAdapterUrl } from "../adapters/signed-url.ts";
import type { Env } from "../env.ts";
import type { ModelTarget } from "../openai/resolve-model.ts";

/**
 * What a backend needs to fetch and check an adapter (`lorafleet.adapter`); the URLs are
 * signed for `backendId` alone.
 */
export async function adapterField(
  env: Env,
  origin: string,
  adapter: AdapterMeta | null,
  backendId: string,
  now: number,
) {
  if (adapter === null) return null;
  const url = (file: AdapterFile) =>
    signAdapterUrl(env, origin, { adapterId: adapter.id, file, backendId }, now);
  return {
    id: adapter.id,
    name: adapter.name,
    rank: adapter.rank,
    sha256: adapter.sha256,
    config_url: await url("adapter_config.json"),
    weights_url: await url("adapter_model.safetensors"),
  };
}

/**
 * The body a backend gets: the client's, plus stream usage always on (the
 * gateway meters it), plus `lorafleet` with the tenant, the request id, the
 * deadline if the client set one, the prefix cache's salt and, for an adapter, where to
 * fetch it (see gateway/README.md, "Gateway -> backend"); a `lorafleet` the client sent is
 * replaced whole, so no client sets its own salt,
 * shaped as the backend's schema reads it (@lorafleet/api `LorafleetFieldSchema`).
 */
export async function backendBody(
  env: Env,
  request: {
    origin: string;
    tenantId: string;
    requestId: string;
    /** The backend this body goes to: the adapter URLs are signed for it. */
    backendId: string;
    now: number;
    /** Absolute unix ms after which the backend drops the request; null = none. */
    deadlineMs: number | null;
    /** Which requests share cached KV with this one (cache-salt.ts). */
    cacheSalt: string;
  },
  body: Record<string, unknown> & { stream_options?: unknown },
  target: ModelTarget,
): Promise<Record<string, unknown>> {
  const stream = body.stream === true;
  const options =
    typeof body.stream_options === "object" && body.stream_options !== null
      ? body.stream_options
      : {};
  return {
    ...body,
    // The usage so far in every chunk and at the end, to bill a stream cut short by what it
    // relayed (meterSse shows the client only what it asked for).
    ...(stream
      ? { stream_options: { ...options, include_usage: true, continuous_usage_stats: true } }
      : {}),
    lorafleet: {
      tenant: request.tenantId,
      request_id: request.requestId,
      ...(request.deadlineMs === null ? {} : { deadline_ms: request.deadlineMs }),
      base_model: target.baseModel,
      cache_salt: request.cacheSalt,
      adapter: await adapterField(
        env,
        request.origin,
        target.adapter,
        request.backendId,
        request.now,
      ),
    } satisfies z.input<typeof LorafleetFieldSchema>,
  };
}
