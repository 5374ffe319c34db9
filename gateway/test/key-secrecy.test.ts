// An API key (or its hash) never appears in what the gateway logs or answers: on success,
// on a wrong or revoked key, with KV down and with D1 down. Everything the Worker writes
// to the console is captured while the real app serves each request.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createApp, createGatewayState } from "../src/app.ts";
import { sha256Hex } from "../src/crypto.ts";
import type { Env } from "../src/env.ts";
import {
  admin,
  createTenant,
  origin,
  registerBaseModel,
  registerPeerBackend,
  tinyModel,
} from "./helpers/gateway-client.ts";

const failing = (message: string) =>
  new Proxy({} as never, {
    get: () => () => {
      throw new Error(message);
    },
  });

afterEach(() => {
  vi.restoreAllMocks();
});

describe("API key secrecy", () => {
  it("never logs or echoes a key or its hash, whatever the outcome", async () => {
    const model = (await registerBaseModel(tinyModel())).name;
    await registerPeerBackend(model);
    const tenant = await createTenant();
    const revoked = await createTenant();
    const keys = await admin<{ data: { id: string }[] }>("GET", `/tenants/${revoked.id}/keys`);
    await admin("POST", `/keys/${keys.data[0]?.id}/revoke`);
    const unknownKey = `${tenant.key.slice(0, -4)}zzzz`;

    const logged: string[] = [];
    for (const level of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
        logged.push(args.map(String).join(" "));
      });
    }
    const bodies: string[] = [];
    const send = async (key: string, bindings: Env) => {
      const ctx = createExecutionContext();
      const response = await createApp(createGatewayState()).fetch(
        new Request(`${origin}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({ model, messages: [{ role: "user", content: "hi" }] }),
        }),
        bindings,
        ctx,
      );
      bodies.push(await response.text());
      await waitOnExecutionContext(ctx);
      return response.status;
    };
    const kvDown = { ...env, CACHE: failing("KV down") };
    const d1Down = {
      ...env,
      CACHE: kvDown.CACHE,
      DB: failing("D1_ERROR: Network connection lost."),
    };
    expect(await send(tenant.key, env)).toBe(200);
    expect(await send(tenant.key, kvDown)).toBe(200);
    expect(await send(unknownKey, env)).toBe(401);
    expect(await send(revoked.key, kvDown)).toBe(401);
    expect(await send(tenant.key, d1Down)).toBe(503);

    expect(logged.length).toBeGreaterThan(0); // the request lines and KV warnings were captured
    const secrets = [tenant.key, unknownKey, revoked.key];
    const hashes = await Promise.all(secrets.map((k) => sha256Hex(k)));
    for (const text of [...logged, ...bodies]) {
      for (const secret of [...secrets, ...hashes, tenant.key.slice(8)]) {
        expect(text).not.toContain(secret);
      }
    }
  });
});
