// One adapter validator (issue #20, item 7), the gateway's side: an upload is judged by the
// shared adapter rules (@lorafleet/api) that the backends' registration and the executor's
// staging apply, so every case of api/fixtures/adapter-cases.json gets the fixture's
// verdict here (its code and message, to the word), and the adapters the issue found the
// gateway marking ready and the executor refusing (`"r": 8.0` aside, which both now serve)
// are refused at upload. The backend's side: test/reliability/adapter-rules.test.ts.
import { beforeAll, describe, expect, it } from "vitest";
import fixture from "../../api/fixtures/adapter-cases.json" with { type: "json" };
import {
  adapterFiles,
  type BaseModelSpec,
  createTenant,
  registerBaseModel,
  type Tenant,
  tinyModel,
  unique,
  upload,
  uploadForm,
} from "./helpers/gateway-client.ts";
import { buildAdapter } from "./helpers/safetensors-builder.ts";

type Verdict =
  | { rank: number; scale: number; targets: string[] }
  | { code: string; message: string };
type Case = (typeof fixture.cases)[number];

const bytes = (base64: string) => Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
const SCALE =
  "adapter_config.json: the scale lora_alpha / r (lora_alpha / sqrt(r) with use_rslora) must be above 0 and at most 1024";

let tenant: Tenant;

/** Uploads `config` and `weights`; the verdict in the fixture's form. */
async function verdictOf(config: Uint8Array | string, weights: Uint8Array): Promise<Verdict> {
  const res = await upload(
    tenant.key,
    uploadForm(unique("rules"), adapterFiles({ config: config as string, weights })),
  );
  const body = (await res.json()) as {
    rank: number;
    error?: { code: string; message: string };
  };
  if (res.status === 201) return { rank: body.rank, scale: Number.NaN, targets: [] };
  expect(res.status, JSON.stringify(body)).toBe(
    body.error?.code === "adapter_too_large" ? 413 : 400,
  );
  return { code: body.error?.code ?? "", message: body.error?.message ?? "" };
}

beforeAll(async () => {
  // The fixture's made-up base model: 2 layers, hidden 8, 4 heads of 2 (2 for K/V), 12.
  await registerBaseModel({
    name: "org/made-up",
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_lora_rank: fixture.base.maxRank,
    max_position_embeddings: 2048,
  });
  tenant = await createTenant({ max_adapter_bytes: 10_000_000, max_rank: 64, max_adapters: 1000 });
});

describe("uploads judged by the shared adapter rules", () => {
  // A directory without the config, the weights or with a pickle is the form's business
  // at the gateway (missing_file, pickle_not_accepted as 415): its own wording.
  const uploadable = fixture.cases.filter((c: Case) => c.config !== null && c.weights !== null);

  it.each(uploadable.map((c: Case) => [c.name, c] as const))("%s", async (_, c) => {
    const verdict = await verdictOf(bytes(c.config as string), bytes(c.weights as string));
    if ("code" in c.expect) expect(verdict).toEqual(c.expect);
    else expect(verdict).toMatchObject({ rank: c.expect.rank });
  });
});

describe("the issue's adapters", () => {
  const model: BaseModelSpec = tinyModel();
  beforeAll(async () => {
    await registerBaseModel(model);
  });

  /** tiny-model rank-4 q/v adapter, config changed, A of layer 0 q_proj's first value set. */
  function adapter(config: Record<string, unknown>, firstValue?: number) {
    const files = buildAdapter(model, { rank: 4, config });
    if (firstValue !== undefined) {
      const view = new DataView(files.weights.buffer);
      const headerLength = Number(view.getBigUint64(0, true));
      const header = JSON.parse(
        new TextDecoder().decode(files.weights.subarray(8, 8 + headerLength)),
      );
      const first = header["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
      view.setFloat32(8 + headerLength + first.data_offsets[0], firstValue, true);
    }
    return files;
  }

  it("serves r 8.0 (the executor reads it as 8 too)", async () => {
    const files = buildAdapter(model, { rank: 8 });
    const config = files.config.replace('"r":8,', '"r":8.0,');
    expect(config).toContain('"r":8.0,');
    expect(await verdictOf(config, files.weights)).toMatchObject({ rank: 8 });
  });

  it.each([
    ["lora_alpha 1e308", adapter({ lora_alpha: 1e308 }), "scale_out_of_range", SCALE],
    [
      "rsLoRA with lora_alpha 1e30",
      adapter({ lora_alpha: 1e30, use_rslora: true }),
      "scale_out_of_range",
      SCALE,
    ],
    [
      "NaN weights",
      adapter({}, Number.NaN),
      "non_finite_weights",
      "adapter_model.safetensors: layer 0 q_proj lora_A holds values that are not finite",
    ],
    [
      "inf weights",
      adapter({}, Number.NEGATIVE_INFINITY),
      "non_finite_weights",
      "adapter_model.safetensors: layer 0 q_proj lora_A holds values that are not finite",
    ],
    [
      "modules_to_save",
      adapter({ modules_to_save: ["lm_head"] }),
      "unsupported_adapter_feature",
      "adapter_config.json: modules_to_save is set; it is not supported",
    ],
    [
      "rank_pattern",
      adapter({ rank_pattern: { q_proj: 2 } }),
      "unsupported_adapter_feature",
      "adapter_config.json: rank_pattern is set; it is not supported",
    ],
  ])("refuses %s at upload with the backends' reason", async (_, files, code, message) => {
    expect(await verdictOf(files.config, files.weights)).toEqual({ code, message });
  });
});
