// Each backend's own secret (src/auth/backend-credential.ts): answered once by the admin
// API, sent by the gateway to that backend only, and retired by rotation or removal.
// The test peer's virtual backends each accept only the secret derived for their name.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createApp, createGatewayState } from "../src/app.ts";
import {
  adapterFiles,
  admin,
  adminCall,
  chat,
  createTenant,
  getAsBackend,
  peerRequests,
  peerUrl,
  registerBaseModel,
  setPeerMode,
  tinyModel,
  unique,
  upload,
  uploadForm,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

type Registered = { id: string; secret_version: number; backend_secret: string };
type ErrorBody = { error: { code: string } };

async function registerBackend(baseModel: string, id = unique("peer")): Promise<Registered> {
  return admin<Registered>("POST", "/backends", { id, url: peerUrl(id), base_model: baseModel });
}

/**
 * GET an adapter file as a backend sending `secret`. A URL with no valid signature tells
 * the two checks apart: 401 when the secret is refused, 403 bad_signature once it passed.
 */
async function downloadAs(
  secret: string,
  url = "https://gateway.test/internal/adapters/ad_x/adapter_config.json",
) {
  const res = await getAsBackend(url, secret);
  const body = (await res.json().catch(() => null)) as ErrorBody | null;
  return { status: res.status, code: body?.error.code };
}

const refused = { status: 401, code: "invalid_backend_credential" };
const accepted = { status: 403, code: "bad_signature" };

describe("backend secrets", () => {
  it("answers each backend its own secret on registration, sends it that one, and never lists it", async () => {
    const [modelA, modelB] = [
      await registerBaseModel(tinyModel()),
      await registerBaseModel(tinyModel()),
    ];
    const a = await registerBackend(modelA.name);
    const b = await registerBackend(modelB.name);
    expect(a.backend_secret).toMatch(new RegExp(`^${a.id}\\.v1\\.[A-Za-z0-9_-]{43}$`));
    expect(a.secret_version).toBe(1);
    expect(b.backend_secret).not.toBe(a.backend_secret);
    // registering again (an update) keeps the secret
    expect((await registerBackend(modelA.name, a.id)).backend_secret).toBe(a.backend_secret);

    const tenant = await createTenant();
    expect((await chat(tenant.key, modelA.name)).status).toBe(200);
    expect((await chat(tenant.key, modelB.name)).status).toBe(200);
    expect((await peerRequests(a.id))[0]?.headers.authorization).toBe(`Bearer ${a.backend_secret}`);
    expect((await peerRequests(b.id))[0]?.headers.authorization).toBe(`Bearer ${b.backend_secret}`);

    const listed = await adminCall("GET", "/backends");
    const text = await listed.text();
    expect(text).not.toContain(a.backend_secret.split(".").at(-1));
    expect(text).not.toContain("backend_secret");
    const rows = (JSON.parse(text) as { data: { id: string; secret_version: number }[] }).data;
    expect(rows.find((r) => r.id === a.id)?.secret_version).toBe(1);
  });

  it("rotation retires the old secret at once; the gateway routes around the backend until it has the new one", async () => {
    const model = await registerBaseModel(tinyModel());
    const backend = await registerBackend(model.name);
    const tenant = await createTenant();
    expect(
      (await upload(tenant.key, uploadForm("rot", adapterFiles(buildAdapter(model))))).status,
    ).toBe(201);
    expect((await chat(tenant.key, "rot")).status).toBe(200);

    const rotated = await admin<Registered>("POST", `/backends/${backend.id}/rotate-secret`);
    expect(rotated.secret_version).toBe(2);
    expect(rotated.backend_secret).toMatch(new RegExp(`^${backend.id}\\.v2\\.`));
    expect(await downloadAs(backend.backend_secret)).toEqual(refused);
    expect(await downloadAs(rotated.backend_secret)).toEqual(accepted);

    // The backend still holds v1 and refuses the gateway's v2: never the client's 401.
    const meanwhile = await chat(tenant.key, "rot");
    expect(meanwhile.status).toBe(503);
    expect(((await meanwhile.json()) as ErrorBody).error.code).toBe("no_backend_available");

    // restarted with the new secret, resumed: served again, URLs downloadable with v2 only
    await setPeerMode(backend.id, { mode: "ok", secretVersion: 2 });
    await admin("POST", `/backends/${backend.id}/resume`);
    expect((await chat(tenant.key, "rot")).status).toBe(200);
    const last = (await peerRequests(backend.id)).at(-1);
    expect(last?.headers.authorization).toBe(`Bearer ${rotated.backend_secret}`);
    const url = last?.body.lorafleet.adapter?.weights_url ?? "";
    expect((await downloadAs(backend.backend_secret, url)).status).toBe(401);
    expect((await downloadAs(rotated.backend_secret, url)).status).toBe(200);
    expect((await adminCall("POST", "/backends/nope/rotate-secret")).status).toBe(404);
  });

  it("removing a backend retires its secret, and registering the id again gives a new one", async () => {
    const model = await registerBaseModel(tinyModel());
    const first = await registerBackend(model.name);
    expect(await downloadAs(first.backend_secret)).toEqual(accepted);
    await admin("DELETE", `/backends/${first.id}`);
    expect(await downloadAs(first.backend_secret)).toEqual(refused);
    const again = await registerBackend(model.name, first.id);
    expect(again.secret_version).toBe(2);
    expect(again.backend_secret).not.toBe(first.backend_secret);
    expect(await downloadAs(first.backend_secret)).toEqual(refused);
    expect(await downloadAs(again.backend_secret)).toEqual(accepted);
  });

  it("registers no backend while BACKEND_SECRET, the key of every backend's secret, is missing", async () => {
    const model = await registerBaseModel(tinyModel());
    const id = unique("peer");
    const ctx = createExecutionContext();
    const res = await createApp(createGatewayState()).fetch(
      new Request("https://gateway.test/admin/backends", {
        method: "POST",
        headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ id, url: peerUrl(id), base_model: model.name }),
      }),
      { ...env, BACKEND_SECRET: "too-short" },
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(503);
    expect(((await res.json()) as ErrorBody).error.code).toBe("gateway_misconfigured");
    expect((await adminCall("GET", "/backends")).ok).toBe(true);
    expect(await (await adminCall("GET", "/backends")).text()).not.toContain(id);
  });
});
