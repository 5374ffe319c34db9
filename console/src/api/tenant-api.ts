import type { GatewayClient } from "./gateway-client.ts";
import { GatewayError } from "./gateway-error.ts";
import type { Adapter, List, Model, Scope, UsageSummary } from "./types.ts";

// The gateway has no "who am I" route, so a key's scopes are learnt from harmless
// calls: GET /v1/models needs `inference`; DELETE of an adapter name that cannot
// exist needs `adapters:write` and answers 404 when the key has it.
const probeAdapterName = "--scope-probe--";

/**
 * Checks a tenant key and learns its scopes; throws GatewayError 401 for a bad
 * key and 403 for a suspended tenant.
 */
export async function keyScopes(client: GatewayClient): Promise<Scope[]> {
  const scopes: Scope[] = [];
  try {
    await client.send("GET", "/v1/models");
    scopes.push("inference");
  } catch (error) {
    if (!(error instanceof GatewayError && error.code === "insufficient_scope")) throw error;
  }
  try {
    await client.send("DELETE", `/v1/adapters/${probeAdapterName}`);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    if (error.code === "adapter_not_found") scopes.push("adapters:write");
    else if (error.code !== "insufficient_scope") throw error;
  }
  return scopes;
}

export function listAdapters(client: GatewayClient): Promise<Adapter[]> {
  return client.json<List<Adapter>>("GET", "/v1/adapters").then((list) => list.data);
}

export function deleteAdapter(client: GatewayClient, name: string): Promise<unknown> {
  return client.json("DELETE", `/v1/adapters/${encodeURIComponent(name)}`);
}

export function listModels(client: GatewayClient): Promise<Model[]> {
  return client.json<List<Model>>("GET", "/v1/models").then((list) => list.data);
}

/** The tenant's usage in [start, end) unix ms. */
export function usage(client: GatewayClient, start: number, end: number): Promise<UsageSummary> {
  return client.json<UsageSummary>("GET", `/v1/usage?start=${start}&end=${end}`);
}
