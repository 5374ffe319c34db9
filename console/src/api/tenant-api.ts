import type { GatewayClient } from "./gateway-client.ts";
import type {
  Adapter,
  ApiKey,
  GroupedUsage,
  IssuedKey,
  List,
  Me,
  Model,
  Scope,
  UsageGroup,
} from "./types.ts";

/** Who the key is (tenant, prefix, scopes, limits); GatewayError 401 for a bad key, 403 for a suspended tenant. */
export function whoAmI(client: GatewayClient): Promise<Me> {
  return client.json<Me>("GET", "/v1/me");
}

/** A key's scopes (the CLI's login reports them). */
export async function keyScopes(client: GatewayClient): Promise<Scope[]> {
  return (await whoAmI(client)).key.scopes;
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

/** The tenant's usage in [start, end) unix ms, a line per combination of `groupBy`. */
export function groupedUsage(
  client: GatewayClient,
  start: number,
  end: number,
  groupBy: UsageGroup[],
): Promise<GroupedUsage> {
  return client.json<GroupedUsage>(
    "GET",
    `/v1/usage?start=${start}&end=${end}&group_by=${groupBy.join(",")}`,
  );
}

// The key's own tenant's keys (/v1/keys): only for keys with the `admin` scope.

export function listOwnKeys(client: GatewayClient): Promise<ApiKey[]> {
  return client.json<List<ApiKey>>("GET", "/v1/keys").then((list) => list.data);
}

export function issueOwnKey(
  client: GatewayClient,
  input: { scopes: Scope[]; name?: string; expires_at?: number },
): Promise<IssuedKey> {
  return client.json<IssuedKey>("POST", "/v1/keys", input);
}

export function revokeOwnKey(client: GatewayClient, keyId: string): Promise<unknown> {
  return client.json("POST", `/v1/keys/${encodeURIComponent(keyId)}/revoke`);
}
