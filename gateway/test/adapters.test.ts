import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { backendCredential } from "../src/auth/backend-credential.ts";
import { sha256Hex } from "../src/crypto.ts";
import {
  adapterFiles,
  type BaseModelSpec,
  call,
  chat,
  createTenant,
  defined,
  getAsBackend,
  origin,
  peerRequests,
  registerBaseModel,
  registerPeerBackend,
  type Tenant,
  tinyModel,
  unique,
  upload,
  uploadForm,
} from "./helpers/gateway-client.ts";
import { buildAdapter, buildSafetensors, loraTensors } from "./helpers/safetensors-builder.ts";
import { testSecrets } from "./peer/constants.ts";

let model: BaseModelSpec;
let tenant: Tenant;

beforeAll(async () => {
  model = await registerBaseModel(tinyModel());
  tenant = await createTenant({ max_adapter_bytes: 200_000, max_rank: 8 });
});

type ErrorBody = { error: { code: string; message: string; type: string } };

async function stored(): Promise<{ rows: number; objects: number }> {
  const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM adapters").first<{ n: number }>();
  const objects = await env.FILES.list({ prefix: "adapters/" });
  return { rows: rows?.n ?? 0, objects: objects.objects.length };
}

describe("adapter upload", () => {
  it("stores a valid adapter as ready with its sha256, and lists, gets and deletes it", async () => {
    const files = buildAdapter(model, {
      rank: 8,
      targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    });
    const res = await upload(tenant.key, uploadForm("support-bot", adapterFiles(files)));
    expect(res.status).toBe(201);
    const created = (await res.json()) as {
      id: string;
      status: string;
      sha256: string;
      rank: number;
      base_model: string;
    };
    expect(created).toMatchObject({ status: "ready", rank: 8, base_model: model.name });
    expect(created.sha256).toBe(await sha256Hex(files.weights));
    const object = await env.FILES.get(`adapters/${created.id}/adapter_model.safetensors`);
    expect(new Uint8Array(await defined(object).arrayBuffer())).toEqual(files.weights);

    const list = (await (await call(tenant.key, "GET", "/v1/adapters")).json()) as {
      data: { name: string }[];
    };
    expect(list.data.map((a) => a.name)).toContain("support-bot");
    expect((await call(tenant.key, "GET", "/v1/adapters/support-bot")).status).toBe(200);
    const again = await upload(tenant.key, uploadForm("support-bot", adapterFiles(files)));
    expect(again.status).toBe(409);

    expect((await call(tenant.key, "DELETE", "/v1/adapters/support-bot")).status).toBe(200);
    expect((await call(tenant.key, "GET", "/v1/adapters/support-bot")).status).toBe(404);
    expect(await env.FILES.head(`adapters/${created.id}/adapter_model.safetensors`)).toBeNull();
  });

  const malformed: {
    name: string;
    status: number;
    code: string;
    build: () => {
      files: { filename: string; content: string | Uint8Array }[];
      fields?: Record<string, string>;
    };
  }[] = [
    {
      name: "config is not JSON",
      status: 400,
      code: "adapter_config_invalid_json",
      build: () => {
        const a = buildAdapter(model);
        return { files: adapterFiles({ ...a, config: "{not json" }) };
      },
    },
    {
      name: "not a LoRA",
      status: 400,
      code: "adapter_config_invalid",
      build: () => ({ files: adapterFiles(buildAdapter(model, { config: { peft_type: "IA3" } })) }),
    },
    {
      name: "rank above the tenant's cap",
      status: 400,
      code: "rank_too_large",
      build: () => ({ files: adapterFiles(buildAdapter(model, { rank: 12 })) }),
    },
    {
      name: "unsupported target module",
      status: 400,
      code: "unsupported_target_module",
      build: () => ({
        files: adapterFiles(buildAdapter(model, { config: { target_modules: ["lm_head"] } })),
      }),
    },
    {
      name: "regex target modules",
      status: 400,
      code: "adapter_config_invalid",
      build: () => ({
        files: adapterFiles(buildAdapter(model, { config: { target_modules: ".*proj" } })),
      }),
    },
    {
      name: "DoRA",
      status: 400,
      code: "unsupported_adapter_feature",
      build: () => ({ files: adapterFiles(buildAdapter(model, { config: { use_dora: true } })) }),
    },
    {
      name: "unknown base model",
      status: 400,
      code: "unknown_base_model",
      build: () => ({
        files: adapterFiles(
          buildAdapter(model, { config: { base_model_name_or_path: "meta-llama/Llama-2-7b-hf" } }),
        ),
      }),
    },
    {
      name: "base_model field disagrees with the config",
      status: 400,
      code: "base_model_mismatch",
      build: () => ({
        files: adapterFiles(buildAdapter(model)),
        fields: { base_model: "other/model" },
      }),
    },
    {
      name: "pickle .bin weights",
      status: 415,
      code: "pickle_not_accepted",
      build: () => {
        const a = buildAdapter(model);
        return {
          files: [
            { filename: "adapter_config.json", content: a.config },
            { filename: "adapter_model.bin", content: a.weights },
          ],
        };
      },
    },
    {
      name: "weights missing",
      status: 400,
      code: "missing_file",
      build: () => ({
        files: [{ filename: "adapter_config.json", content: buildAdapter(model).config }],
      }),
    },
    {
      name: "an extra file",
      status: 400,
      code: "unexpected_file",
      build: () => ({
        files: [...adapterFiles(buildAdapter(model)), { filename: "notes.txt", content: "hi" }],
      }),
    },
    {
      name: "truncated safetensors",
      status: 400,
      code: "safetensors_truncated",
      build: () => {
        const a = buildAdapter(model);
        return {
          files: adapterFiles({ ...a, weights: a.weights.subarray(0, a.weights.length - 10) }),
        };
      },
    },
    {
      name: "file shorter than the header length",
      status: 400,
      code: "safetensors_truncated",
      build: () => ({
        files: adapterFiles({ ...buildAdapter(model), weights: new Uint8Array([1, 2, 3]) }),
      }),
    },
    {
      name: "header length beyond the file",
      status: 400,
      code: "safetensors_truncated",
      build: () => {
        const weights = new Uint8Array(64);
        new DataView(weights.buffer).setBigUint64(0, 1000n, true);
        return { files: adapterFiles({ ...buildAdapter(model), weights }) };
      },
    },
    {
      name: "header is not JSON",
      status: 400,
      code: "safetensors_bad_header",
      build: () => {
        const weights = new Uint8Array(8 + 4);
        new DataView(weights.buffer).setBigUint64(0, 4n, true);
        weights.set(new TextEncoder().encode("{{{{"), 8);
        return { files: adapterFiles({ ...buildAdapter(model), weights }) };
      },
    },
    {
      name: "header lies about a tensor's offsets",
      status: 400,
      code: "safetensors_offsets_mismatch",
      build: () => {
        const weights = buildSafetensors(loraTensors(model, 4, ["q_proj", "v_proj"]), (h) => {
          const first = h["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] as {
            data_offsets: number[];
          };
          first.data_offsets = [0, 16]; // claims fewer bytes than its shape needs
        });
        return { files: adapterFiles({ ...buildAdapter(model), weights }) };
      },
    },
    {
      name: "overlapping tensors",
      status: 400,
      code: "safetensors_offsets_mismatch",
      build: () => {
        const weights = buildSafetensors(loraTensors(model, 4, ["q_proj", "v_proj"]), (h) => {
          const a = h["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] as {
            data_offsets: number[];
          };
          const b = h["base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"] as {
            data_offsets: number[];
            shape: number[];
          };
          b.data_offsets = [...a.data_offsets];
          b.shape = [4, 64];
        });
        return { files: adapterFiles({ ...buildAdapter(model), weights }) };
      },
    },
    {
      name: "wrong shapes for the base model",
      status: 400,
      code: "shape_mismatch",
      build: () => {
        const wrong = { ...model, hidden_size: 128 };
        return {
          files: adapterFiles({
            ...buildAdapter(model),
            weights: buildSafetensors(loraTensors(wrong, 4, ["q_proj", "v_proj"])),
          }),
        };
      },
    },
    {
      name: "rank of the tensors differs from r",
      status: 400,
      code: "shape_mismatch",
      build: () => ({
        files: adapterFiles({
          ...buildAdapter(model, { rank: 4 }),
          weights: buildSafetensors(loraTensors(model, 2, ["q_proj", "v_proj"])),
        }),
      }),
    },
    {
      name: "a layer's tensors missing",
      status: 400,
      code: "missing_tensor",
      build: () => ({
        files: adapterFiles({
          ...buildAdapter(model),
          weights: buildSafetensors(loraTensors(model, 4, ["q_proj", "v_proj"]).slice(0, -1)),
        }),
      }),
    },
    {
      name: "tensors for a module target_modules does not list",
      status: 400,
      code: "unexpected_tensor",
      build: () => ({
        files: adapterFiles({
          ...buildAdapter(model),
          weights: buildSafetensors(loraTensors(model, 4, ["q_proj", "v_proj", "o_proj"])),
        }),
      }),
    },
    {
      name: "integer weights",
      status: 400,
      code: "unsupported_dtype",
      build: () => ({
        files: adapterFiles({
          ...buildAdapter(model),
          weights: buildSafetensors(loraTensors(model, 4, ["q_proj", "v_proj"], "I8")),
        }),
      }),
    },
    {
      name: "weights over the tenant's size limit",
      status: 413,
      code: "adapter_too_large",
      build: () => ({
        files: adapterFiles({ ...buildAdapter(model), weights: new Uint8Array(200_001) }),
      }),
    },
  ];

  for (const testCase of malformed) {
    it(`refuses ${testCase.name} with ${testCase.status} ${testCase.code}, leaving nothing in D1 or R2`, async () => {
      const before = await stored();
      const { files, fields } = testCase.build();
      const res = await upload(tenant.key, uploadForm(unique("bad"), files, fields));
      const body = (await res.json()) as ErrorBody;
      expect({ status: res.status, code: body.error.code }).toEqual({
        status: testCase.status,
        code: testCase.code,
      });
      expect(body.error.message.length).toBeGreaterThan(10);
      expect(await stored()).toEqual(before);
    });
  }

  it("refuses an invalid name and a tenant over its adapter count quota", async () => {
    const files = adapterFiles(buildAdapter(model));
    expect((await upload(tenant.key, uploadForm("has/slash", files))).status).toBe(400);
    const small = await createTenant({ max_adapters: 1 });
    expect((await upload(small.key, uploadForm("one", files))).status).toBe(201);
    const over = await upload(small.key, uploadForm("two", files));
    expect(over.status).toBe(403);
    expect(((await over.json()) as ErrorBody).error.code).toBe("adapter_quota_exceeded");
  });
});

describe("tenant isolation", () => {
  it("another tenant's adapter is a 404 on every route, by name and by tenant/name", async () => {
    const owner = await createTenant();
    const other = await createTenant();
    await registerPeerBackend(model.name);
    expect(
      (await upload(owner.key, uploadForm("secret-sauce", adapterFiles(buildAdapter(model)))))
        .status,
    ).toBe(201);
    expect((await chat(owner.key, "secret-sauce")).status).toBe(200);
    expect((await chat(owner.key, `${owner.name}/secret-sauce`)).status).toBe(200);

    const attempts = [
      call(other.key, "GET", "/v1/adapters/secret-sauce"),
      call(other.key, "DELETE", "/v1/adapters/secret-sauce"),
      chat(other.key, "secret-sauce"),
      chat(other.key, `${owner.name}/secret-sauce`),
      call(other.key, "POST", "/v1/completions", {
        model: `${owner.name}/secret-sauce`,
        prompt: "hi",
      }),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.status).toBe(404);
    }
    const models = (await (await call(other.key, "GET", "/v1/models")).json()) as {
      data: { id: string }[];
    };
    expect(models.data.map((m) => m.id)).not.toContain("secret-sauce");
    const list = (await (await call(other.key, "GET", "/v1/adapters")).json()) as {
      data: unknown[];
    };
    expect(list.data).toEqual([]);
    const usage = (await (await call(other.key, "GET", "/v1/usage")).json()) as {
      requests: number;
    };
    expect(usage.requests).toBe(0); // 404s before admission are not billed
    expect((await call(owner.key, "GET", "/v1/adapters/secret-sauce")).status).toBe(200);
  });
});

describe("signed adapter URLs", () => {
  /** A backend of its own base model (the only candidate) and a tenant's adapter, forwarded to it once. */
  async function signedFor() {
    const owner = await createTenant();
    const ownModel = await registerBaseModel(tinyModel());
    const backend = await registerPeerBackend(ownModel.name);
    const files = buildAdapter(ownModel);
    expect((await upload(owner.key, uploadForm("signed", adapterFiles(files)))).status).toBe(201);
    expect((await chat(owner.key, "signed")).status).toBe(200);
    const [forwarded] = await peerRequests(backend);
    const adapter = forwarded?.body.lorafleet.adapter as {
      weights_url: string;
      config_url: string;
      sha256: string;
    };
    const secret = await backendCredential(testSecrets.backendSecret, backend, 1);
    return { backend, files, adapter, secret, weightsUrl: new URL(adapter.weights_url) };
  }

  async function expectRefused(res: Response, status: number, code: string) {
    expect(res.status).toBe(status);
    const body = (await res.json()) as ErrorBody;
    expect(body.error).toMatchObject({
      code,
      type: status === 401 ? "authentication_error" : "permission_error",
    });
    expect(body.error.message).not.toContain(testSecrets.backendSecret);
  }

  it("lets the backend it was signed for download the exact bytes for a short time, and nothing else", async () => {
    const { files, adapter, secret, weightsUrl: url, backend } = await signedFor();
    expect(adapter.sha256).toBe(await sha256Hex(files.weights));
    expect(url.searchParams.get("backend")).toBe(backend);
    const weights = await getAsBackend(url, secret);
    expect(weights.status).toBe(200);
    expect(weights.headers.get("x-lorafleet-sha256")).toBe(adapter.sha256);
    expect(new Uint8Array(await weights.arrayBuffer())).toEqual(files.weights);
    expect(await (await getAsBackend(adapter.config_url, secret)).text()).toBe(files.config);

    const sig = url.searchParams.get("sig") ?? "";
    const tampered = new URL(url);
    tampered.searchParams.set("sig", `${sig.startsWith("A") ? "B" : "A"}${sig.slice(1)}`);
    await expectRefused(await getAsBackend(tampered, secret), 403, "bad_signature");
    // The last character has 2 unused bits: a non-canonical spelling of the same bytes is refused too.
    const last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".indexOf(
      sig.slice(-1),
    );
    const respelled = new URL(url);
    respelled.searchParams.set(
      "sig",
      `${sig.slice(0, -1)}${"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]}`,
    );
    await expectRefused(await getAsBackend(respelled, secret), 403, "bad_signature");
    const otherFile = new URL(url);
    otherFile.pathname = otherFile.pathname.replace(
      "adapter_model.safetensors",
      "adapter_config.json",
    );
    await expectRefused(await getAsBackend(otherFile, secret), 403, "bad_signature");
    // bound to the adapter: the same signature on another adapter's path (one that exists) is refused
    const other = await createTenant();
    expect((await upload(other.key, uploadForm("other", adapterFiles(files)))).status).toBe(201);
    const otherId = defined(
      ((await (await call(other.key, "GET", "/v1/adapters/other")).json()) as { id: string }).id,
    );
    const otherAdapter = new URL(url);
    otherAdapter.pathname = otherAdapter.pathname.replace(
      /\/adapters\/[^/]+\//,
      `/adapters/${otherId}/`,
    );
    expect(otherAdapter.pathname).toContain(otherId);
    await expectRefused(await getAsBackend(otherAdapter, secret), 403, "bad_signature");
    const later = new URL(url);
    later.searchParams.set("exp", String(Number(url.searchParams.get("exp")) + 60));
    await expectRefused(await getAsBackend(later, secret), 403, "bad_signature");
    const expiry = Number(url.searchParams.get("exp")) * 1000;
    await expectRefused(await getAsBackend(url, secret, expiry), 403, "url_expired");
    expect((await getAsBackend(url, secret, expiry - 1000)).status).toBe(200);
    expect(url.origin).toBe(origin);
  });

  it("is useless without the secret of the backend it was signed for", async () => {
    const { weightsUrl: url, secret, backend } = await signedFor();
    // another registered backend, with its own secret
    const otherBackend = await registerPeerBackend((await registerBaseModel(tinyModel())).name);
    const otherSecret = await backendCredential(testSecrets.backendSecret, otherBackend, 1);

    // the URL alone (as leaked in a log)
    await expectRefused(await getAsBackend(url, null), 401, "backend_credential_required");
    await expectRefused(
      await getAsBackend(url, "not-a-backend-secret"),
      401,
      "invalid_backend_credential",
    );
    // the master secret is not a backend's secret
    await expectRefused(
      await getAsBackend(url, testSecrets.backendSecret),
      401,
      "invalid_backend_credential",
    );
    // one character off
    const flipped = `${secret.slice(0, -2)}${secret.at(-2) === "A" ? "B" : "A"}${secret.at(-1)}`;
    await expectRefused(await getAsBackend(url, flipped), 401, "invalid_backend_credential");
    // a backend's secret cannot claim another id or another version
    const [, version, mac] = /^.+\.(v\d+)\.([^.]+)$/.exec(otherSecret) ?? [];
    await expectRefused(
      await getAsBackend(url, `${backend}.${version}.${mac}`),
      401,
      "invalid_backend_credential",
    );
    const [, ownMac] = /^.+\.v\d+\.([^.]+)$/.exec(secret) ?? [];
    await expectRefused(
      await getAsBackend(url, `${backend}.v2.${ownMac}`),
      401,
      "invalid_backend_credential",
    );
    // an unregistered id, even with a well-derived secret
    const ghost = await backendCredential(testSecrets.backendSecret, unique("ghost"), 1);
    await expectRefused(await getAsBackend(url, ghost), 401, "invalid_backend_credential");

    // backend B with a URL signed for backend A
    await expectRefused(await getAsBackend(url, otherSecret), 403, "url_for_another_backend");
    // ... nor by writing its own id into A's URL
    const claimed = new URL(url);
    claimed.searchParams.set("backend", otherBackend);
    await expectRefused(await getAsBackend(claimed, otherSecret), 403, "bad_signature");
    const unbound = new URL(url);
    unbound.searchParams.delete("backend");
    await expectRefused(await getAsBackend(unbound, secret), 403, "bad_signature");

    // and the rightful backend still gets it
    expect((await getAsBackend(url, secret)).status).toBe(200);
  });
});
