import type { GatewayClient } from "./gateway-client.ts";
import type {
  ApiKey,
  Backend,
  GroupedUsage,
  IssuedKey,
  List,
  Scope,
  Tenant,
  TenantLimits,
  UsageGroup,
} from "./types.ts";

// The operator's /admin API (admin token), as documented in gateway/README.md.

export function listTenants(client: GatewayClient): Promise<Tenant[]> {
  return client.json<List<Tenant>>("GET", "/admin/tenants").then((list) => list.data);
}

export function createTenant(
  client: GatewayClient,
  input: { name: string } & Partial<TenantLimits>,
): Promise<Tenant> {
  return client.json<Tenant>("POST", "/admin/tenants", input);
}

export function updateTenant(
  client: GatewayClient,
  tenantId: string,
  limits: Partial<TenantLimits>,
): Promise<Tenant> {
  return client.json<Tenant>("PATCH", `/admin/tenants/${encodeURIComponent(tenantId)}`, limits);
}

export function setTenantSuspended(
  client: GatewayClient,
  tenantId: string,
  suspended: boolean,
): Promise<unknown> {
  const action = suspended ? "suspend" : "resume";
  return client.json("POST", `/admin/tenants/${encodeURIComponent(tenantId)}/${action}`);
}

export function listKeys(client: GatewayClient, tenantId: string): Promise<ApiKey[]> {
  return client
    .json<List<ApiKey>>("GET", `/admin/tenants/${encodeURIComponent(tenantId)}/keys`)
    .then((list) => list.data);
}

export function issueKey(
  client: GatewayClient,
  tenantId: string,
  input: { scopes: Scope[]; name?: string; expires_at?: number },
): Promise<IssuedKey> {
  return client.json<IssuedKey>(
    "POST",
    `/admin/tenants/${encodeURIComponent(tenantId)}/keys`,
    input,
  );
}

export function revokeKey(client: GatewayClient, keyId: string): Promise<unknown> {
  return client.json("POST", `/admin/keys/${encodeURIComponent(keyId)}/revoke`);
}

export function listBackends(client: GatewayClient): Promise<Backend[]> {
  return client.json<List<Backend>>("GET", "/admin/backends").then((list) => list.data);
}

/** Any tenant's usage in [start, end) unix ms, a line per combination of `groupBy`. */
export function tenantUsage(
  client: GatewayClient,
  tenantId: string,
  start: number,
  end: number,
  groupBy: UsageGroup[],
): Promise<GroupedUsage> {
  return client.json<GroupedUsage>(
    "GET",
    `/admin/usage?tenant_id=${encodeURIComponent(tenantId)}&start=${start}&end=${end}&group_by=${groupBy.join(",")}`,
  );
}
