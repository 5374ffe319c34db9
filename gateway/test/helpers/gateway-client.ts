import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { ChatCompletionRequestSchema } from "@lorafleet/api";
import { expect } from "vitest";
import { createApp, createGatewayState } from "../../src/app.ts";
import { cacheSalt } from "../../src/proxy/cache-salt.ts";
import { conversationKey, rankForConversation } from "../../src/routing/conversation-affinity.ts";
import { conversationHead } from "../../src/routing/conversation-head.ts";
import { testSecrets } from "../peer/constants.ts";
import type { PeerMode } from "../peer/test-peer.ts";
import type { AdapterFiles } from "./safetensors-builder.ts";

export const origin = "https://gateway.test";

export type BaseModelSpec = {
  name: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_lora_rank: number;
  max_position_embeddings: number;
};

let counter = 0;
/** A name no other test in this file uses. */
export function unique(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}-${Math.random().toString(36).slice(2, 8)}`;
}

export async function adminCall(method: string, path: string, body?: unknown): Promise<Response> {
  return SELF.fetch(`${origin}/admin${path}`, {
    method,
    headers: {
      authorization: `Bearer ${testSecrets.adminToken}`,
      "content-type": "application/json",
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

/** Admin call that must succeed; returns the JSON body. */
export async function admin<T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
): Promise<T> {
  const res = await adminCall(method, path, body);
  if (!res.ok) throw new Error(`${method} /admin${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export function tinyModel(name = unique("org/tiny")): BaseModelSpec {
  return {
    name,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_lora_rank: 16,
    max_position_embeddings: 2048,
  };
}

export async function registerBaseModel(
  model: BaseModelSpec = tinyModel(),
): Promise<BaseModelSpec> {
  await admin("PUT", "/base-models", model);
  return model;
}

export type Tenant = { id: string; name: string; key: string };

/** A tenant with limits and one key (default scopes: inference + adapters:write). */
export async function createTenant(
  limits: Record<string, unknown> = {},
  scopes: string[] = ["inference", "adapters:write"],
): Promise<Tenant> {
  const tenant = await admin<{ id: string; name: string }>("POST", "/tenants", {
    name: unique("tenant"),
    ...limits,
  });
  return { id: tenant.id, name: tenant.name, key: await issueKey(tenant.id, scopes) };
}

export async function issueKey(
  tenantId: string,
  scopes: string[],
  extra: Record<string, unknown> = {},
): Promise<string> {
  const issued = await admin<{ key: string }>("POST", `/tenants/${tenantId}/keys`, {
    scopes,
    ...extra,
  });
  return issued.key;
}

/** A request to the gateway with a tenant's key. */
export function call(
  key: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
) {
  return SELF.fetch(`${origin}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: signal ?? null,
  });
}

export function chat(
  key: string,
  model: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
  signal?: AbortSignal,
) {
  return call(
    key,
    "POST",
    "/v1/chat/completions",
    { model, messages: [{ role: "user", content: "hello there" }], ...extra },
    headers,
    signal,
  );
}

export function uploadForm(
  name: string,
  files: { filename: string; content: string | Uint8Array }[],
  fields: Record<string, string> = {},
): FormData {
  const form = new FormData();
  form.set("name", name);
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  for (const f of files) form.append("files", new File([f.content], f.filename));
  return form;
}

export function adapterFiles(a: AdapterFiles) {
  return [
    { filename: "adapter_config.json", content: a.config },
    { filename: "adapter_model.safetensors", content: a.weights },
  ];
}

export function upload(key: string, form: FormData) {
  return SELF.fetch(`${origin}/v1/adapters`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: form,
  });
}

/**
 * GETs `url` as a backend would, sending `secret` as its bearer (none when null), through
 * a fresh gateway whose clock reads `at` (unix ms) when given.
 */
export async function getAsBackend(url: URL | string, secret: string | null, at?: number) {
  const gateway = createApp(at === undefined ? createGatewayState() : createGatewayState(() => at));
  const ctx = createExecutionContext();
  const headers: Record<string, string> =
    secret === null ? {} : { authorization: `Bearer ${secret}` };
  const res = await gateway.fetch(new Request(url, { headers }), env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

// ── the test peer (a Node HTTP server standing in for backends; see peer/test-peer.ts) ──

export function peerUrl(virtualBackend: string): string {
  return `${env.TEST_PEER_URLS[0]}/b/${virtualBackend}`;
}

export async function setPeerMode(virtualBackend: string, mode: PeerMode): Promise<void> {
  const res = await fetch(`${env.TEST_PEER_URLS[0]}/__control/${virtualBackend}`, {
    method: "POST",
    body: JSON.stringify(mode),
  });
  if (!res.ok) throw new Error(`peer control: ${res.status}`);
}

/** The `lorafleet` field the gateway adds to a forwarded body (see gateway/README.md). */
export type ForwardedAdapter = {
  id: string;
  name: string;
  rank: number;
  sha256: string;
  config_url: string;
  weights_url: string;
};

export type PeerRequest = {
  path: string;
  headers: Record<string, string>;
  body: Record<string, unknown> & {
    model: string;
    lorafleet: {
      tenant: string;
      request_id: string;
      base_model: string;
      adapter: ForwardedAdapter | null;
      deadline_ms?: number;
      cache_salt: string;
    };
  };
  aborted?: boolean;
};

export async function peerRequests(virtualBackend: string): Promise<PeerRequest[]> {
  const res = await fetch(`${env.TEST_PEER_URLS[0]}/__control/${virtualBackend}/requests`);
  return (await res.json()) as PeerRequest[];
}

/** Registers a backend at a fresh virtual backend of the test peer; returns its id (= virtual name). */
export async function registerPeerBackend(
  baseModel: string,
  capacity = 32,
  url?: string,
): Promise<string> {
  const id = unique("peer");
  await admin("POST", "/backends", {
    id,
    url: url ?? peerUrl(id),
    base_model: baseModel,
    capacity,
  });
  return id;
}

/** A base model of its own, served by one fresh peer backend in `mode`. */
export async function peerServedModel(
  mode: PeerMode,
): Promise<{ model: BaseModelSpec; backend: string }> {
  const model = await registerBaseModel(tinyModel());
  const backend = await registerPeerBackend(model.name);
  await setPeerMode(backend, mode);
  return { model, backend };
}

export type UsageRow = {
  /** the gateway's own request key */
  id: string;
  /** the client's x-request-id (or the gateway's UUID): a label */
  request_id: string;
  tenant_id: string;
  outcome: string;
  status: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** of prompt_tokens, those the backend found in its prefix cache */
  cached_tokens: number;
  backend_id: string | null;
  adapter_id: string | null;
  latency_ms: number;
  created_at: number;
};

export async function usageRows(tenantId: string): Promise<UsageRow[]> {
  const { results } = await env.DB.prepare(
    "SELECT * FROM usage WHERE tenant_id = ? ORDER BY created_at",
  )
    .bind(tenantId)
    .all<UsageRow>();
  return results;
}

/** The tenant's usage rows once there are exactly `count` (they are written after the response). */
export async function waitForUsageRows(tenantId: string, count: number): Promise<UsageRow[]> {
  return eventually(async () => {
    const rows = await usageRows(tenantId);
    expect(rows).toHaveLength(count);
    return rows;
  });
}

/** The value, or a thrown error naming what was missing (instead of a `!` assertion). */
export function defined<T>(value: T | undefined | null, what = "value"): T {
  if (value === undefined || value === null) throw new Error(`expected a ${what}`);
  return value;
}

/** Waits until `check` stops throwing (usage rows are written after the response, in waitUntil). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The id of the key `key` (from `GET /v1/me`). */
export async function keyIdOf(key: string): Promise<string> {
  const me = (await (await call(key, "GET", "/v1/me")).json()) as { key: { id: string } };
  return me.key.id;
}

/** The prefix cache's salt the gateway sends for `key` of `tenant` (proxy/cache-salt.ts). */
export async function saltOf(tenant: Tenant, key: string, sharePrefixCache = false) {
  const scope = { tenantId: tenant.id, keyId: await keyIdOf(key), sharePrefixCache };
  return cacheSalt(testSecrets.backendSecret, scope);
}

/**
 * The order the gateway tries `backends` (equal capacity, no load) in for a chat of `body`
 * sent with `tenant`'s key: the routing under test, computed apart from the gateway.
 */
export async function chatOrder(
  tenant: Tenant,
  target: { adapterId: string | null; baseModel: string },
  body: Record<string, unknown>,
  backends: string[],
  sharePrefixCache = false,
): Promise<string[]> {
  const salt = await saltOf(tenant, tenant.key, sharePrefixCache);
  const head = conversationHead(ChatCompletionRequestSchema.parse(body));
  const key = conversationKey(salt, target.adapterId, target.baseModel, head);
  const fleet = backends.map((id) => ({ id, capacity: 32, load: 0 }));
  return rankForConversation(key, fleet).map((b) => b.id);
}
