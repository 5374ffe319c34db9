import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp, createGatewayState } from "../src/app.ts";
import { keyCacheTtl } from "../src/auth/key-resolver.ts";
import { sha256Hex } from "../src/crypto.ts";
import {
  admin,
  adminCall,
  call,
  createTenant,
  issueKey,
  origin,
} from "./helpers/gateway-client.ts";
import { isolate } from "./helpers/isolate.ts";
import { testSecrets } from "./peer/constants.ts";

describe("API keys", () => {
  it("shows a key once and stores only its SHA-256 hash", async () => {
    const tenant = await admin<{ id: string }>("POST", "/tenants", { name: "keys-once" });
    const issued = await admin<{ id: string; key: string; prefix: string }>(
      "POST",
      `/tenants/${tenant.id}/keys`,
      {
        scopes: ["inference"],
      },
    );
    expect(issued.key).toMatch(/^lf_live_[0-9A-Za-z]{40}$/);
    expect(issued.key.startsWith(issued.prefix)).toBe(true);
    expect(issued).not.toHaveProperty("hash");
    const listed = await admin<{ data: Record<string, unknown>[] }>(
      "GET",
      `/tenants/${tenant.id}/keys`,
    );
    expect(JSON.stringify(listed)).not.toContain(issued.key);
    const row = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(issued.id).first();
    expect(row?.hash).toBe(await sha256Hex(issued.key));
    expect(JSON.stringify(row)).not.toContain(issued.key);
  });

  it("accepts a valid key, records last use, and refuses missing, malformed and unknown keys in OpenAI's shape", async () => {
    const tenant = await createTenant();
    expect((await call(tenant.key, "GET", "/v1/models")).status).toBe(200);
    const used = await env.DB.prepare("SELECT last_used_at FROM api_keys WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ last_used_at: number | null }>();
    expect(used?.last_used_at).toBeGreaterThan(0);

    const missing = await call("", "GET", "/v1/models", undefined, { authorization: "" });
    expect(missing.status).toBe(401);
    // Errors carry the request id and the gateway's time too.
    expect(missing.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(missing.headers.get("x-lorafleet-gateway-ms")).toMatch(/^\d+$/);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe(
      "missing_api_key",
    );
    for (const bad of [
      "lf_live_short",
      `lf_live_${"x".repeat(40)}`,
      tenant.key.slice(0, -1) + (tenant.key.endsWith("a") ? "b" : "a"),
    ]) {
      const res = await call(bad, "GET", "/v1/models");
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        error: {
          message: "Incorrect API key provided",
          type: "authentication_error",
          param: null,
          code: "invalid_api_key",
        },
      });
    }
  });

  it("revoking a key stops it at once in the isolate that revoked it", async () => {
    const tenant = await createTenant();
    expect((await call(tenant.key, "GET", "/v1/models")).status).toBe(200);
    const { data } = await admin<{ data: { id: string }[] }>("GET", `/tenants/${tenant.id}/keys`);
    await admin("POST", `/keys/${data[0]?.id}/revoke`);
    expect((await call(tenant.key, "GET", "/v1/models")).status).toBe(401);
  });

  it(`revocation reaches another isolate within the stated bound (${keyCacheTtl.isolateMs} ms after the KV entry is gone)`, async () => {
    const tenant = await createTenant();
    const other = isolate(Date.now());
    expect((await other.fetch("/v1/models", tenant.key)).status).toBe(200); // now cached in `other`
    const { data } = await admin<{ data: { id: string }[] }>("GET", `/tenants/${tenant.id}/keys`);
    await admin("POST", `/keys/${data[0]?.id}/revoke`); // another isolate: deletes D1 validity + KV
    expect(await env.CACHE.get(`key:${await sha256Hex(tenant.key)}`)).toBeNull();
    other.clock.now += keyCacheTtl.isolateMs - 1;
    expect((await other.fetch("/v1/models", tenant.key)).status).toBe(200); // stale, inside the bound
    other.clock.now += 1;
    expect((await other.fetch("/v1/models", tenant.key)).status).toBe(401);
  });

  it("an expired key is refused even from the cache", async () => {
    const tenant = await admin<{ id: string }>("POST", "/tenants", { name: "keys-expiry" });
    const start = Date.now();
    const key = await issueKey(tenant.id, ["inference"], { expires_at: start + 60_000 });
    const gateway = isolate(start);
    expect((await gateway.fetch("/v1/models", key)).status).toBe(200);
    gateway.clock.now = start + 60_000;
    const res = await gateway.fetch("/v1/models", key);
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("expired_api_key");
    expect(
      (await adminCall("POST", `/tenants/${tenant.id}/keys`, { expires_at: start - 1 })).status,
    ).toBe(400);
  });

  it("scopes: inference keys cannot upload, adapter keys cannot infer, admin-scoped keys can do both", async () => {
    const tenant = await createTenant({}, ["inference"]);
    const writer = await issueKey(tenant.id, ["adapters:write"]);
    const owner = await issueKey(tenant.id, ["admin"]);
    const upload = (key: string) => call(key, "POST", "/v1/adapters", {});
    const denied = await upload(tenant.key);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { error: { code: string } }).error.code).toBe(
      "insufficient_scope",
    );
    expect((await call(writer, "GET", "/v1/models")).status).toBe(403);
    expect((await upload(writer)).status).toBe(415); // past auth: not multipart
    expect((await upload(owner)).status).toBe(415);
    expect((await call(owner, "GET", "/v1/models")).status).toBe(200);
  });

  it("suspending a tenant refuses its keys; resuming restores them", async () => {
    const tenant = await createTenant();
    expect((await call(tenant.key, "GET", "/v1/models")).status).toBe(200);
    await admin("POST", `/tenants/${tenant.id}/suspend`);
    const res = await call(tenant.key, "GET", "/v1/models");
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("tenant_suspended");
    await admin("POST", `/tenants/${tenant.id}/resume`);
    expect((await call(tenant.key, "GET", "/v1/models")).status).toBe(200);
  });
});

describe("self-service keys (admin scope)", () => {
  it("lets a tenant admin issue, list and revoke its own keys, and nobody else's", async () => {
    const tenant = await createTenant({}, ["admin"]);
    const other = await createTenant();
    const issued = await call(tenant.key, "POST", "/v1/keys", {
      scopes: ["inference"],
      name: "ci",
    });
    expect(issued.status).toBe(201);
    const { id, key } = (await issued.json()) as { id: string; key: string };
    expect((await call(key, "GET", "/v1/models")).status).toBe(200);
    expect((await call(key, "GET", "/v1/keys")).status).toBe(403); // inference only
    const listed = (await (await call(tenant.key, "GET", "/v1/keys")).json()) as {
      data: { id: string }[];
    };
    expect(listed.data.map((k) => k.id)).toContain(id);
    expect(JSON.stringify(listed)).not.toContain(key);

    const { data: otherKeys } = await admin<{ data: { id: string }[] }>(
      "GET",
      `/tenants/${other.id}/keys`,
    );
    expect((await call(tenant.key, "POST", `/v1/keys/${otherKeys[0]?.id}/revoke`)).status).toBe(
      404,
    );
    expect((await call(other.key, "GET", "/v1/models")).status).toBe(200);

    expect((await call(tenant.key, "POST", `/v1/keys/${id}/revoke`)).status).toBe(200);
    expect((await call(key, "GET", "/v1/models")).status).toBe(401);
  });
});

describe("configuration", () => {
  it("answers 503 naming a missing secret instead of signing or forwarding without it", async () => {
    const tenant = await createTenant();
    const app = createApp(createGatewayState());
    const ctx = createExecutionContext();
    const res = await app.fetch(
      new Request(`${origin}/v1/models`, { headers: { authorization: `Bearer ${tenant.key}` } }),
      { ...env, BACKEND_SECRET: "" },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain(
      "BACKEND_SECRET",
    );
  });
});

describe("admin API", () => {
  it("needs the admin token, compared whole", async () => {
    const wrong = await call(`${testSecrets.adminToken}x`, "GET", "/admin/tenants");
    expect(wrong.status).toBe(401);
    expect((await call(testSecrets.adminToken.slice(0, -1), "GET", "/admin/tenants")).status).toBe(
      401,
    );
    const tenant = await createTenant();
    expect((await call(tenant.key, "GET", "/admin/tenants")).status).toBe(401); // tenant keys are not admin tokens
  });

  it("creates, lists and limits tenants, refusing bad input with the field named", async () => {
    const created = await admin<{ id: string; name: string; requests_per_minute: number | null }>(
      "POST",
      "/tenants",
      {
        name: "acme-admin",
        requests_per_minute: 5,
      },
    );
    expect(created.requests_per_minute).toBe(5);
    const dup = await adminCall("POST", "/tenants", { name: "acme-admin" });
    expect(dup.status).toBe(409);
    const bad = await adminCall("POST", "/tenants", { name: "Bad Name!" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { param: string } }).error.param).toBe("name");
    const patched = await admin<{ tokens_per_minute: number }>("PATCH", `/tenants/${created.id}`, {
      tokens_per_minute: 900,
    });
    expect(patched.tokens_per_minute).toBe(900);
    const list = await admin<{ data: { name: string }[] }>("GET", "/tenants");
    expect(list.data.map((t) => t.name)).toContain("acme-admin");
    expect((await adminCall("GET", "/tenants/tn_nope")).status).toBe(404);
  });

  it("takes a base model straight from an HF config.json, extra fields and nulls included", async () => {
    const config = {
      architectures: ["LlamaForCausalLM"],
      vocab_size: 49152,
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: null,
      head_dim: null,
      rope_theta: 100000,
    };
    const model = await admin("PUT", "/base-models", { ...config, name: "org/hf-config" });
    expect(model).toMatchObject({ head_dim: 64, num_key_value_heads: 9, max_lora_rank: 64 });
    const bad = await adminCall("PUT", "/base-models", {
      ...config,
      name: "org/bad",
      num_attention_heads: 7,
    });
    expect(bad.status).toBe(400);
  });

  it("registers and drains backends; a backend needs a known base model", async () => {
    expect(
      (await adminCall("POST", "/backends", { id: "b1", url: "http://x", base_model: "nope/none" }))
        .status,
    ).toBe(404);
    expect(
      (await adminCall("POST", "/backends", { id: "b1", url: "not a url", base_model: "x" }))
        .status,
    ).toBe(400);
    await admin("PUT", "/base-models", {
      name: "org/admin-model",
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
    });
    await admin("POST", "/backends", {
      id: "b1",
      url: "http://127.0.0.1:9/",
      base_model: "org/admin-model",
      capacity: 4,
    });
    const drained = await admin<{ status: string; url: string }>("POST", "/backends/b1/drain");
    expect(drained).toMatchObject({ status: "draining", url: "http://127.0.0.1:9" });
    expect((await adminCall("POST", "/backends/nope/drain")).status).toBe(404);
  });
});
