// Seeds a gateway the way an operator and a tenant would: the admin API (base model,
// backends, tenants, keys, limits) and the tenant's own upload API for adapters.
import { readFileSync } from "node:fs";
import { join } from "node:path";

export type TenantLimits = {
  requests_per_minute?: number | null;
  tokens_per_minute?: number | null;
  concurrent_streams?: number | null;
  monthly_token_quota?: number | null;
};

export type Tenant = { id: string; name: string; key: string };

export class GatewayAdmin {
  readonly #url: string;
  readonly #token: string;

  constructor(url: string, adminToken: string) {
    this.#url = url;
    this.#token = adminToken;
  }

  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.#url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${this.#token}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return JSON.parse(text) as T;
  }

  /** Registers `name` with the dimensions of the HF model directory `modelDir`. */
  async registerBaseModel(name: string, modelDir: string): Promise<void> {
    const config = JSON.parse(readFileSync(join(modelDir, "config.json"), "utf8"));
    await this.call("PUT", "/admin/base-models", { ...config, name, max_lora_rank: 64 });
  }

  /** Registers a backend; returns its secret (the backend's `--backend-secret`). */
  async registerBackend(id: string, url: string, baseModel: string): Promise<string> {
    const { backend_secret } = await this.call<{ backend_secret: string }>(
      "POST",
      "/admin/backends",
      { id, url, base_model: baseModel, capacity: 16 },
    );
    return backend_secret;
  }

  /** A tenant with one key that may infer and upload adapters. */
  async createTenant(name: string, limits: TenantLimits = {}): Promise<Tenant> {
    const { id } = await this.call<{ id: string }>("POST", "/admin/tenants", { name, ...limits });
    const { key } = await this.call<{ key: string }>("POST", `/admin/tenants/${id}/keys`, {
      scopes: ["inference", "adapters:write"],
      name: "e2e",
    });
    return { id, name, key };
  }

  /** Issues another key of `tenantId` (inference only unless `scopes`); returns its id (for revoking) and secret. */
  async issueKey(
    tenantId: string,
    scopes: string[] = ["inference"],
  ): Promise<{ id: string; key: string }> {
    return this.call("POST", `/admin/tenants/${tenantId}/keys`, { scopes });
  }

  async revokeKey(keyId: string): Promise<void> {
    await this.call("POST", `/admin/keys/${keyId}/revoke`);
  }
}

/** Uploads a PEFT directory through POST /v1/adapters as tenant `key`; returns the adapter object. */
export async function uploadAdapter(
  gatewayUrl: string,
  key: string,
  name: string,
  dir: string,
): Promise<{ id: string; name: string; status: string; sha256: string }> {
  const form = new FormData();
  form.append("name", name);
  for (const file of ["adapter_config.json", "adapter_model.safetensors"]) {
    form.append("files", new Blob([readFileSync(join(dir, file))]), file);
  }
  const response = await fetch(`${gatewayUrl}/v1/adapters`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: form,
  });
  const text = await response.text();
  if (response.status !== 201) throw new Error(`upload ${name}: ${response.status} ${text}`);
  return JSON.parse(text);
}
