// D1 and KV failing under the gateway (issue 8, Faults): the real app in the Workers
// runtime, its bindings wrapped so that KV throws on every call and D1 throws D1's own
// transient errors (once or always). A request is retried or answered 503
// storage_unavailable in OpenAI's shape. Usage rows reach D1 through the usage Queue: its
// consumer's faults (D1 failing mid-batch, a consumer killed after a commit, redelivery)
// are tested in src/usage/usage-queue.test.ts.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { createApp, createGatewayState } from "../src/app.ts";
import type { Env } from "../src/env.ts";
import {
  createTenant,
  eventually,
  origin,
  registerBaseModel,
  registerPeerBackend,
  type Tenant,
  tinyModel,
  usageRows,
} from "./helpers/gateway-client.ts";

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string } };

/** D1's own wording (Cloudflare's retry guide), so the gateway sees what production throws. */
const d1Blip = () => new Error("D1_ERROR: Network connection lost.");

/** KV that throws on every call, as during a KV outage. */
const brokenKv = new Proxy({} as KVNamespace, {
  get: () => async () => {
    throw new Error("KV GET failed: 500 Internal Server Error");
  },
});

type D1Fault = {
  /** which statements fail */
  matches: RegExp;
  /** how many times they fail; Infinity = always */
  times: number;
};

/** The real D1, with statements matching `fault.matches` failing as told; counts the failures. */
function flakyD1(db: D1Database, fault: D1Fault) {
  const state = { failures: 0 };
  const wrapStatement = (statement: D1PreparedStatement, sql: string): D1PreparedStatement =>
    new Proxy(statement, {
      get(target, prop) {
        const value = Reflect.get(target, prop) as unknown;
        if (typeof value !== "function") return value;
        if (prop === "bind") {
          return (...args: unknown[]) => wrapStatement(target.bind(...args), sql);
        }
        if (prop !== "first" && prop !== "all" && prop !== "run" && prop !== "raw") {
          return value.bind(target);
        }
        return async (...args: unknown[]) => {
          if (fault.matches.test(sql) && state.failures < fault.times) {
            state.failures += 1;
            throw d1Blip();
          }
          return (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        };
      },
    });
  const wrapped = new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => wrapStatement(target.prepare(sql), sql);
      const value = Reflect.get(target, prop) as unknown;
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { db: wrapped, state };
}

/** One chat request through a fresh app (no isolate caches) over the given bindings. */
async function chatWith(bindings: Env, tenant: Tenant, model: string): Promise<Response> {
  const app = createApp(createGatewayState());
  const ctx = createExecutionContext();
  const response = await app.fetch(
    new Request(`${origin}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${tenant.key}`, "content-type": "application/json" },
      body: JSON.stringify({ model, messages: [{ role: "user", content: "hello" }] }),
    }),
    bindings,
    ctx,
  );
  await response.clone().arrayBuffer();
  await waitOnExecutionContext(ctx);
  return response;
}

describe("D1 and KV transient errors", () => {
  let model: string;
  beforeAll(async () => {
    model = (await registerBaseModel(tinyModel())).name;
    await registerPeerBackend(model);
  });

  const served = async (bindings: Env, tenant: Tenant) => {
    const response = await chatWith(bindings, tenant, model);
    expect(response.status, await response.clone().text()).toBe(200);
    const rows = await eventually(async () => {
      const rows = await usageRows(tenant.id);
      expect(rows.length).toBeGreaterThan(0);
      return rows;
    });
    expect(rows.map((r) => [r.status, r.outcome])).toEqual([[200, "ok"]]);
  };

  it("serves with KV failing on every get and put: D1 answers instead", async () => {
    const tenant = await createTenant();
    await served({ ...env, CACHE: brokenKv }, tenant);
    // a second request, again missing every cache, is served and recorded on its own row
    await chatWith({ ...env, CACHE: brokenKv }, tenant, model);
    await eventually(async () => expect(await usageRows(tenant.id)).toHaveLength(2));
  });

  it("retries a key lookup that fails once", async () => {
    const tenant = await createTenant();
    const { db, state } = flakyD1(env.DB, { matches: /FROM api_keys/, times: 1 });
    await served({ ...env, DB: db, CACHE: brokenKv }, tenant);
    expect(state.failures).toBe(1);
  });

  it("retries a backend and adapter lookup that fail once", async () => {
    const tenant = await createTenant();
    const { db, state } = flakyD1(env.DB, { matches: /FROM (backends|base_models)/, times: 2 });
    await served({ ...env, DB: db }, tenant);
    expect(state.failures).toBe(2);
  });

  it("answers 503 storage_unavailable with Retry-After when D1 stays down, and records nothing", async () => {
    const tenant = await createTenant();
    const { db, state } = flakyD1(env.DB, { matches: /FROM api_keys/, times: Infinity });
    const response = await chatWith({ ...env, DB: db, CACHE: brokenKv }, tenant, model);
    expect(response.status).toBe(503);
    expect(response.headers.get("retry-after")).toBe("1");
    const body = (await response.json()) as ErrorBody;
    expect(body).toEqual({
      error: {
        message: expect.stringContaining("retry") as unknown as string,
        type: expect.any(String) as unknown as string,
        param: null,
        code: "storage_unavailable",
      },
    });
    expect(body.error.message).not.toContain(tenant.key);
    expect(state.failures).toBe(3);
    expect(await usageRows(tenant.id)).toEqual([]);
  });

  it("answers 503 for a D1 blip on a route without its own retry (admin)", async () => {
    const { db } = flakyD1(env.DB, { matches: /FROM tenants/, times: Infinity });
    const app = createApp(createGatewayState());
    const ctx = createExecutionContext();
    const response = await app.fetch(
      new Request(`${origin}/admin/tenants`, {
        headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` },
      }),
      { ...env, DB: db },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(response.status).toBe(503);
    expect(((await response.json()) as ErrorBody).error.code).toBe("storage_unavailable");
  });
});
