import { Hono } from "hono";
import { z } from "zod";
import type { AppEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { defaultTokenBounds } from "../limits/estimate-tokens.ts";
import type { ModelResolver } from "../openai/resolve-model.ts";
import { parseJsonBody } from "../validation.ts";

const dim = z.number().int().positive();

/** Field names follow the model's HF config.json, so its values can be posted as they are. */
const baseModelSchema = z
  .object({
    name: z.string().min(1).max(200),
    hidden_size: dim,
    intermediate_size: dim,
    num_hidden_layers: dim,
    num_attention_heads: dim,
    // HF configs may leave these out or set them to null (then: no GQA, hidden / heads).
    num_key_value_heads: dim.nullish(),
    head_dim: dim.nullish(),
    max_lora_rank: dim.default(64),
    // Token bounds for admission (src/limits/estimate-tokens.ts): the context is read from
    // config.json; the template allowance is ours (the most tokens its chat template adds per message).
    max_position_embeddings: dim.default(defaultTokenBounds.contextLength),
    template_tokens_per_message: z
      .number()
      .int()
      .nonnegative()
      .default(defaultTokenBounds.templateTokensPerMessage),
  })
  .refine((m) => m.head_dim != null || m.hidden_size % m.num_attention_heads === 0, {
    message: "hidden_size must divide by num_attention_heads when head_dim is not given",
  });

/** The adapters (of any tenant) that model name ?1 calls: by their name, or as `<tenant>/<name>`. */
const shadowedAdapters = `SELECT t.name AS tenant, a.name AS adapter FROM adapters a JOIN tenants t ON t.id = a.tenant_id
  WHERE a.name = ?1 OR t.name || '/' || a.name = ?1`;

export type BaseModel = {
  name: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  max_lora_rank: number;
  max_position_embeddings: number;
  template_tokens_per_message: number;
  created_at: number;
};

/** /admin/base-models: the models backends serve and adapters are checked against. */
export function baseModelRoutes(models: ModelResolver) {
  const app = new Hono<AppEnv>();

  // A new base model may not take a name an adapter of any tenant answers to (`name`, or
  // `<tenant>/<name>`): the base model would win and silently shadow it. The check is part
  // of the insert, so an adapter uploaded at the same moment cannot slip in between.
  app.put("/", async (c) => {
    const m = await parseJsonBody(c, baseModelSchema);
    const headDim = m.head_dim ?? m.hidden_size / m.num_attention_heads;
    const written = await c.env.DB.prepare(
      `INSERT INTO base_models (name, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
         num_key_value_heads, head_dim, max_lora_rank, max_position_embeddings, template_tokens_per_message,
         created_at)
       SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
       WHERE EXISTS (SELECT 1 FROM base_models WHERE name = ?1)
         OR NOT EXISTS (${shadowedAdapters})
       ON CONFLICT (name) DO UPDATE SET hidden_size = excluded.hidden_size, intermediate_size = excluded.intermediate_size,
         num_hidden_layers = excluded.num_hidden_layers, num_attention_heads = excluded.num_attention_heads,
         num_key_value_heads = excluded.num_key_value_heads, head_dim = excluded.head_dim, max_lora_rank = excluded.max_lora_rank,
         max_position_embeddings = excluded.max_position_embeddings,
         template_tokens_per_message = excluded.template_tokens_per_message`,
    )
      .bind(
        m.name,
        m.hidden_size,
        m.intermediate_size,
        m.num_hidden_layers,
        m.num_attention_heads,
        m.num_key_value_heads ?? m.num_attention_heads,
        headDim,
        m.max_lora_rank,
        m.max_position_embeddings,
        m.template_tokens_per_message,
        Date.now(),
      )
      .run();
    if (written.meta.changes === 0) {
      const shadowed = await c.env.DB.prepare(`${shadowedAdapters} LIMIT 1`)
        .bind(m.name)
        .first<{ tenant: string; adapter: string }>();
      throw new ApiError(
        409,
        "name_is_an_adapter",
        `A base model may not be named ${m.name}: tenant ${shadowed?.tenant} has an adapter that name calls (${shadowed?.adapter}), which the base model would shadow`,
        { param: "name" },
      );
    }
    models.invalidate();
    return c.json(await getBaseModel(c.env.DB, m.name));
  });

  app.get("/", async (c) => {
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM base_models ORDER BY name",
    ).all<BaseModel>();
    return c.json({ object: "list", data: results });
  });

  return app;
}

export async function getBaseModel(db: D1Database, name: string): Promise<BaseModel> {
  const row = await db
    .prepare("SELECT * FROM base_models WHERE name = ?")
    .bind(name)
    .first<BaseModel>();
  if (row === null) throw new ApiError(404, "base_model_not_found", `No base model ${name}`);
  return row;
}
