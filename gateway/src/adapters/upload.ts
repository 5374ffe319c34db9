import {
  checkLoraTensors,
  checkAdapterConfig as checkRules,
  parseSafetensorsHeader,
  safetensorsHeaderEnd,
  WeightValues,
} from "@lorafleet/api";
import { type BaseModel, getBaseModel } from "../admin/base-models.ts";
import type { Principal } from "../auth/principal.ts";
import { sha256Hex } from "../crypto.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { adapterError, underAdapterRules } from "./adapter-error.ts";
import { type AdapterRow, adapterObjectKey } from "./adapter-store.ts";
import type { LoraConfig, TargetModule } from "./lora-config.ts";
import { adapterBase } from "./lora-shapes.ts";
import { adapterFiles } from "./signed-url.ts";
import type { UploadForm } from "./upload-form.ts";

/** A checked adapter_config.json and the base model it is checked against. */
export type CheckedConfig = { config: LoraConfig; model: BaseModel };

/**
 * Checks adapter_config.json for this tenant: by the shared adapter rules (the backends'
 * registration and staging apply the same, so an adapter refused there is refused here
 * with the same message), with a rank within both the base model's and the tenant's caps;
 * then on a registered base model the tenant may use (and `baseModelField` names, if
 * given).
 */
export async function checkAdapterConfig(
  env: Env,
  principal: Principal,
  configBytes: Uint8Array,
  baseModelField: string | null,
): Promise<CheckedConfig> {
  // The base model caps the rank, which the rules check in their order: find it first.
  const named = baseModelOf(configBytes);
  const model = named === null ? null : await getBaseModel(env.DB, named).catch(() => null);
  const maxRank = Math.min(
    model?.max_lora_rank ?? Number.POSITIVE_INFINITY,
    principal.adapterQuota.maxRank,
  );
  const rules = underAdapterRules(() => checkRules(configBytes, maxRank));
  if (named === null || named === "") {
    throw adapterError(
      "adapter_config_invalid",
      "adapter_config.json: base_model_name_or_path must name the base model",
    );
  }
  if (baseModelField !== null && baseModelField !== named) {
    throw adapterError(
      "base_model_mismatch",
      `adapter_config.json was trained on ${named}, but base_model says ${baseModelField}`,
    );
  }
  const allowed = principal.allowedBaseModels;
  if (allowed.length > 0 && !allowed.includes(named)) {
    throw adapterError("base_model_not_allowed", `This tenant may not use base model ${named}`);
  }
  if (model === null) {
    throw adapterError(
      "unknown_base_model",
      `adapter_config.json names base model ${named}, which no backend serves`,
    );
  }
  const targetModules = rules.targets.map((m) => `${m}_proj` as TargetModule);
  return { config: { ...rules, targetModules, baseModel: named }, model };
}

/** base_model_name_or_path, when the config is a JSON object with it as a string. */
function baseModelOf(configBytes: Uint8Array): string | null {
  try {
    const raw = JSON.parse(new TextDecoder().decode(configBytes)) as unknown;
    const name = (raw as { base_model_name_or_path?: unknown } | null)?.base_model_name_or_path;
    return typeof name === "string" ? name : null;
  } catch {
    return null;
  }
}

/**
 * The adapter's weights against the shared rules: the header (`head`, at least its
 * first safetensorsHeaderEnd bytes) and tensors; returns the check of their values, to
 * be fed the data section.
 */
export function checkWeightsHeader(
  head: Uint8Array,
  fileSize: number,
  { config, model }: CheckedConfig,
): WeightValues {
  return underAdapterRules(() => {
    const entries = parseSafetensorsHeader(head, fileSize);
    const tensors = checkLoraTensors(entries, config, adapterBase(model, model.max_lora_rank));
    return new WeightValues(tensors, config);
  });
}

/**
 * Inserts an adapter's row within the tenant's adapter count quota; a taken
 * name is a 409, and so is a base model's name, as `name` or as `<tenant>/<name>` (a
 * model name says one thing: a base model always wins, so that adapter could never be
 * called). The base model check is part of the insert, so a base model registered at the
 * same moment cannot slip in between. `weightsSha256` is empty until a multipart upload is checked.
 */
export async function insertAdapterRow(
  env: Env,
  principal: Principal,
  row: {
    id: string;
    name: string;
    status: "uploaded" | "validating";
    config: LoraConfig;
    configBytes: number;
    configSha256: string;
    weightsBytes: number;
    weightsSha256: string;
    uploadId: string | null;
  },
  now: number,
): Promise<void> {
  const count = await env.DB.prepare("SELECT COUNT(*) AS n FROM adapters WHERE tenant_id = ?")
    .bind(principal.tenantId)
    .first<{ n: number }>();
  if ((count?.n ?? 0) >= principal.adapterQuota.maxAdapters) {
    throw adapterError(
      "adapter_quota_exceeded",
      `This tenant already has its maximum of ${principal.adapterQuota.maxAdapters} adapters`,
      403,
    );
  }
  const qualified = `${principal.tenantName}/${row.name}`;
  const inserted = await env.DB.prepare(
    `INSERT OR IGNORE INTO adapters (id, tenant_id, name, base_model, status, rank, lora_alpha, target_modules,
       config_bytes, weights_bytes, weights_sha256, config_sha256, upload_id, created_at)
     SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?
     WHERE NOT EXISTS (SELECT 1 FROM base_models WHERE name IN (?, ?))`,
  )
    .bind(
      row.id,
      principal.tenantId,
      row.name,
      row.config.baseModel,
      row.status,
      row.config.rank,
      row.config.alpha,
      JSON.stringify(row.config.targetModules),
      row.configBytes,
      row.weightsBytes,
      row.weightsSha256,
      row.configSha256,
      row.uploadId,
      now,
      row.name,
      qualified,
    )
    .run();
  if (inserted.meta.changes > 0) return;
  const base = await env.DB.prepare("SELECT name FROM base_models WHERE name IN (?, ?)")
    .bind(row.name, qualified)
    .first<{ name: string }>();
  if (base !== null) {
    throw adapterError(
      "name_is_a_base_model",
      `An adapter may not be named ${row.name}: ${base.name} is a base model, which ${base.name === row.name ? "that name" : `the model name ${qualified}`} would always call`,
      409,
    );
  }
  throw adapterError("adapter_exists", `An adapter named ${row.name} exists`, 409);
}

export async function getAdapterRow(env: Env, id: string): Promise<AdapterRow> {
  const row = await env.DB.prepare("SELECT * FROM adapters WHERE id = ?")
    .bind(id)
    .first<AdapterRow>();
  if (row === null) throw new ApiError(500, "adapter_not_stored", "The adapter row vanished");
  return row;
}

/**
 * Validates an uploaded adapter completely in memory, then records it and
 * writes its files. Nothing is stored for an adapter that fails validation;
 * a storage failure after that leaves a `failed` row with the reason and no files.
 */
export async function storeAdapter(
  env: Env,
  principal: Principal,
  form: UploadForm,
  now: number,
): Promise<AdapterRow> {
  const checked = await checkAdapterConfig(env, principal, form.config, form.baseModel);
  const { config } = checked;
  const headerEnd = underAdapterRules(() =>
    safetensorsHeaderEnd(form.weights, form.weights.byteLength),
  );
  const values = checkWeightsHeader(
    form.weights.subarray(0, headerEnd),
    form.weights.byteLength,
    checked,
  );
  values.add(form.weights.subarray(headerEnd));
  underAdapterRules(() => values.check());
  const id = newId("ad_");
  const [configSha, weightsSha] = await Promise.all([
    sha256Hex(form.config),
    sha256Hex(form.weights),
  ]);
  await insertAdapterRow(
    env,
    principal,
    {
      id,
      name: form.name,
      status: "validating",
      config,
      configBytes: form.config.byteLength,
      configSha256: configSha,
      weightsBytes: form.weights.byteLength,
      weightsSha256: weightsSha,
      uploadId: null,
    },
    now,
  );
  try {
    // R2 checks the sha256 of what it stored against the one we computed.
    await env.FILES.put(adapterObjectKey(id, "adapter_config.json"), form.config, {
      sha256: configSha,
    });
    await env.FILES.put(adapterObjectKey(id, "adapter_model.safetensors"), form.weights, {
      sha256: weightsSha,
    });
  } catch (error) {
    await failAdapter(env, id, `storing the files failed: ${String(error)}`);
    throw new ApiError(
      502,
      "adapter_storage_failed",
      "Storing the adapter's files failed; delete it and upload again",
    );
  }
  await env.DB.prepare("UPDATE adapters SET status = 'ready' WHERE id = ?").bind(id).run();
  return getAdapterRow(env, id);
}

/** Marks an adapter failed with the reason and removes its files. */
export async function failAdapter(env: Env, id: string, reason: string): Promise<void> {
  await env.FILES.delete(adapterFiles.map((f) => adapterObjectKey(id, f)));
  await env.DB.prepare(
    "UPDATE adapters SET status = 'failed', failure_reason = ?, upload_id = NULL WHERE id = ?",
  )
    .bind(reason, id)
    .run();
}
