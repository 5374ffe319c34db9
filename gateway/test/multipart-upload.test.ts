import { env, SELF } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { partBytes } from "../src/adapters/multipart-upload.ts";
import { sha256Hex } from "../src/crypto.ts";
import {
  type BaseModelSpec,
  call,
  chat,
  createTenant,
  origin,
  registerBaseModel,
  registerPeerBackend,
  type Tenant,
  tinyModel,
  unique,
} from "./helpers/gateway-client.ts";
import { buildAdapter, buildSafetensors, loraTensors } from "./helpers/safetensors-builder.ts";

type Adapter = {
  id: string;
  name: string;
  status: string;
  sha256: string;
  failure_reason: string | null;
  parts?: number;
};
type ErrorBody = { error: { code: string; message: string } };

/** 8 layers of every projection at rank 16, F32: about 8.9 MB, two parts. */
const wideModel = (): BaseModelSpec => ({
  ...tinyModel(),
  name: unique("org/wide"),
  hidden_size: 1024,
  intermediate_size: 2048,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  num_key_value_heads: 8,
  max_lora_rank: 16,
});
const allTargets = [
  "q_proj",
  "k_proj",
  "v_proj",
  "o_proj",
  "gate_proj",
  "up_proj",
  "down_proj",
] as const;

function start(key: string, name: string, config: string, weightsBytes: number) {
  const form = new FormData();
  form.set("name", name);
  form.set("weights_bytes", String(weightsBytes));
  form.set("files", new File([config], "adapter_config.json"));
  return SELF.fetch(`${origin}/v1/adapters/uploads`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: form,
  });
}

function putPart(key: string, id: string, part: number, bytes: Uint8Array) {
  return SELF.fetch(`${origin}/v1/adapters/uploads/${id}/parts/${part}`, {
    method: "PUT",
    headers: { authorization: `Bearer ${key}` },
    body: bytes,
  });
}

/** Uploads `weights` in parts and completes; returns the complete call's response. */
async function sendParts(key: string, id: string, weights: Uint8Array): Promise<Response> {
  const parts: { part_number: number; etag: string }[] = [];
  for (let offset = 0, n = 1; offset < weights.length; offset += partBytes, n += 1) {
    const res = await putPart(key, id, n, weights.subarray(offset, offset + partBytes));
    expect(res.status).toBe(200);
    parts.push((await res.json()) as { part_number: number; etag: string });
  }
  return call(key, "POST", `/v1/adapters/uploads/${id}/complete`, { parts });
}

describe("multipart adapter upload", () => {
  let model: BaseModelSpec;
  let tenant: Tenant;
  beforeAll(async () => {
    model = await registerBaseModel(wideModel());
    await registerPeerBackend(model.name);
    tenant = await createTenant();
  });

  it("takes the config first, the weights in parts, and checks and hashes the assembled file", async () => {
    const files = buildAdapter(model, { rank: 16, targets: [...allTargets] });
    expect(files.weights.length).toBeGreaterThan(partBytes);
    const started = await start(tenant.key, "big", files.config, files.weights.length);
    expect(started.status).toBe(201);
    const adapter = (await started.json()) as Adapter;
    expect(adapter).toMatchObject({ status: "uploaded", parts: 2 });
    expect((await chat(tenant.key, "big")).status).toBe(404); // not ready yet

    const done = await sendParts(tenant.key, adapter.id, files.weights);
    expect(done.status).toBe(200);
    expect((await done.json()) as Adapter).toMatchObject({
      status: "ready",
      sha256: await sha256Hex(files.weights),
    });
    const stored = await env.FILES.get(`adapters/${adapter.id}/adapter_model.safetensors`);
    expect(stored?.size).toBe(files.weights.length);
    expect((await chat(tenant.key, "big")).status).toBe(200);
    const again = await call(tenant.key, "POST", `/v1/adapters/uploads/${adapter.id}/complete`, {
      parts: [{ part_number: 1, etag: "x" }],
    });
    expect(again.status).toBe(409);
  });

  const broken: [string, (w: Uint8Array) => { declared: number; sent: Uint8Array }, string][] = [
    [
      "a size other than declared",
      (w) => ({ declared: w.length, sent: w.subarray(0, w.length - 4) }),
      "size_mismatch",
    ],
    [
      "a header that is not JSON",
      (w) => {
        const sent = w.slice();
        sent.set(new TextEncoder().encode("not json at all"), 8);
        return { declared: w.length, sent };
      },
      "safetensors_bad_header",
    ],
    [
      "shapes of another model",
      () => {
        const sent = buildSafetensors(
          loraTensors({ ...model, hidden_size: 512 }, 16, [...allTargets]),
        );
        return { declared: sent.length, sent };
      },
      "shape_mismatch",
    ],
    [
      "a NaN weight in its second part (the values are checked as the file streams past)",
      (w) => {
        const sent = w.slice();
        new DataView(sent.buffer).setFloat32(sent.length - 4, Number.NaN, true);
        return { declared: w.length, sent };
      },
      "non_finite_weights",
    ],
  ];
  for (const [what, corrupt, code] of broken) {
    it(`marks an upload with ${what} failed (${code}) and removes its files`, async () => {
      const files = buildAdapter(model, { rank: 16, targets: [...allTargets] });
      const { declared, sent } = corrupt(files.weights);
      const name = unique("broken");
      const adapter = (await (
        await start(tenant.key, name, files.config, declared)
      ).json()) as Adapter;
      const done = await sendParts(tenant.key, adapter.id, sent);
      expect(done.status).toBe(400);
      const { error } = (await done.json()) as ErrorBody;
      expect(error.code).toBe(code);
      const row = (await (await call(tenant.key, "GET", `/v1/adapters/${name}`)).json()) as Adapter;
      expect(row.status).toBe("failed");
      expect(row.failure_reason).toBe(error.message);
      expect((await env.FILES.list({ prefix: `adapters/${adapter.id}/` })).objects).toEqual([]);
      expect((await chat(tenant.key, name)).status).toBe(404);
      expect((await call(tenant.key, "DELETE", `/v1/adapters/${name}`)).status).toBe(200);
    });
  }

  it("refuses a bad config or an oversized declaration before storing anything", async () => {
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM adapters").first<{
      n: number;
    }>();
    const bad = await start(tenant.key, unique("x"), JSON.stringify({ peft_type: "LORA" }), 1000);
    expect(bad.status).toBe(400);
    const small = await createTenant({ max_adapter_bytes: 1000 });
    const big = await start(small.key, unique("x"), buildAdapter(model).config, 1001);
    expect(big.status).toBe(413);
    const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM adapters").first<{ n: number }>();
    expect(after?.n).toBe(before?.n);
  });

  it("refuses a part over part_bytes and an oversized config form with 413, stored nothing", async () => {
    const files = buildAdapter(model, { rank: 16, targets: [...allTargets] });
    const name = unique("bounded");
    const adapter = (await (
      await start(tenant.key, name, files.config, files.weights.length)
    ).json()) as Adapter;
    const tooBig = await putPart(tenant.key, adapter.id, 1, new Uint8Array(partBytes + 1));
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as ErrorBody).error.code).toBe("part_too_large");
    expect((await call(tenant.key, "DELETE", `/v1/adapters/${name}`)).status).toBe(200);

    const padded = await start(tenant.key, unique("padded"), " ".repeat(200 * 1024), 1000);
    expect(padded.status).toBe(413);
    expect(((await padded.json()) as ErrorBody).error.code).toBe("adapter_too_large");
  });

  it("keeps an upload to its tenant, and deleting it aborts it", async () => {
    const files = buildAdapter(model, { rank: 16, targets: [...allTargets] });
    const adapter = (await (
      await start(tenant.key, "pending", files.config, files.weights.length)
    ).json()) as Adapter;
    const other = await createTenant();
    expect((await putPart(other.key, adapter.id, 1, files.weights.subarray(0, 100))).status).toBe(
      404,
    );
    expect(
      (
        await call(other.key, "POST", `/v1/adapters/uploads/${adapter.id}/complete`, {
          parts: [{ part_number: 1, etag: "e" }],
        })
      ).status,
    ).toBe(404);
    expect((await putPart(tenant.key, adapter.id, 3, files.weights.subarray(0, 100))).status).toBe(
      400,
    );
    expect((await call(tenant.key, "DELETE", "/v1/adapters/pending")).status).toBe(200);
    expect((await putPart(tenant.key, adapter.id, 1, files.weights.subarray(0, 100))).status).toBe(
      404,
    );
    expect((await env.FILES.list({ prefix: `adapters/${adapter.id}/` })).objects).toEqual([]);
  });
});
