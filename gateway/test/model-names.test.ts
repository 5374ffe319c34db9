// A model name says one thing: an adapter may not be named like a base model (as `name` or
// as `<tenant>/<name>`), a new base model may not shadow an adapter of any tenant, and
// /v1/models never lists a name twice (issue #20, 9).
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  adapterFiles,
  adminCall,
  type BaseModelSpec,
  call,
  createTenant,
  origin,
  registerBaseModel,
  tinyModel,
  unique,
  upload,
  uploadForm,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

type ErrorBody = { error: { code: string; message: string; param: string | null } };

/** A base model whose name has no slash, so an adapter could be named like it. */
const plainModel = (name = unique("plain")): BaseModelSpec => ({ ...tinyModel(), name });

/** Starts a multipart upload (config first) of an adapter `name` of `model`. */
function startMultipart(key: string, name: string, model: BaseModelSpec) {
  const files = buildAdapter(model);
  const form = new FormData();
  form.set("name", name);
  form.set("weights_bytes", String(files.weights.length));
  form.set("files", new File([files.config], "adapter_config.json"));
  return SELF.fetch(`${origin}/v1/adapters/uploads`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: form,
  });
}

describe("model names say one thing", () => {
  it("refuses an adapter named like a base model, by name or as <tenant>/<name>, uploaded whole or in parts", async () => {
    const base = await registerBaseModel(plainModel());
    const tenant = await createTenant();
    const qualified = await registerBaseModel(plainModel(`${tenant.name}/bot`));
    const files = adapterFiles(buildAdapter(base));
    for (const [name, conflict] of [
      [base.name, base.name],
      ["bot", qualified.name],
    ] as const) {
      for (const res of [
        await upload(tenant.key, uploadForm(name, files)),
        await startMultipart(tenant.key, name, base),
      ]) {
        expect(res.status).toBe(409);
        const { error } = (await res.json()) as ErrorBody;
        expect(error.code).toBe("name_is_a_base_model");
        expect(error.message).toContain(`${conflict} is a base model`);
      }
    }
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM adapters WHERE tenant_id = ?")
      .bind(tenant.id)
      .first<{ n: number }>();
    expect(rows?.n).toBe(0);
    // another tenant may name an adapter "bot": the base model shadows only <tenant>/bot
    const other = await createTenant();
    expect((await upload(other.key, uploadForm("bot", files))).status).toBe(201);
  });

  it("refuses a new base model that would shadow an adapter of any tenant, naming it, and still updates an existing one", async () => {
    const base = await registerBaseModel(plainModel());
    const tenant = await createTenant();
    const files = adapterFiles(buildAdapter(base));
    expect((await upload(tenant.key, uploadForm("helper", files))).status).toBe(201);
    for (const name of ["helper", `${tenant.name}/helper`]) {
      const res = await adminCall("PUT", "/base-models", { ...tinyModel(), name });
      expect(res.status).toBe(409);
      const { error } = (await res.json()) as ErrorBody;
      expect(error).toMatchObject({ code: "name_is_an_adapter", param: "name" });
      expect(error.message).toContain(
        `tenant ${tenant.name} has an adapter that name calls (helper)`,
      );
    }
    const names = await env.DB.prepare("SELECT name FROM base_models WHERE name IN (?, ?)")
      .bind("helper", `${tenant.name}/helper`)
      .all();
    expect(names.results).toEqual([]);
    // re-registering the base model the adapter was trained on is an update, as before
    const updated = await adminCall("PUT", "/base-models", { ...base, max_lora_rank: 32 });
    expect(updated.status).toBe(200);
    expect(((await updated.json()) as { max_lora_rank: number }).max_lora_rank).toBe(32);
  });

  it("lists each model name once, a base model over an adapter named like it (rows from before the rule)", async () => {
    const base = await registerBaseModel(plainModel());
    const tenant = await createTenant();
    const files = adapterFiles(buildAdapter(base));
    expect((await upload(tenant.key, uploadForm("fine", files))).status).toBe(201);
    // as an adapter uploaded before names were checked would be
    await env.DB.prepare("UPDATE adapters SET name = ? WHERE tenant_id = ? AND name = 'fine'")
      .bind(base.name, tenant.id)
      .run();
    expect((await upload(tenant.key, uploadForm("other", files))).status).toBe(201);
    const listed = (await (await call(tenant.key, "GET", "/v1/models")).json()) as {
      data: { id: string; owned_by: string }[];
    };
    const ids = listed.data.map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(listed.data.filter((m) => m.id === base.name)).toEqual([
      expect.objectContaining({ owned_by: "lorafleet" }),
    ]);
    expect(ids).toContain("other");
  });
});
