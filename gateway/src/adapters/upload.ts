import { type BaseModel, getBaseModel } from "../admin/base-models.ts";
import type { Principal } from "../auth/principal.ts";
import { sha256Hex } from "../crypto.ts";
import type { Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { adapterError } from "./adapter-error.ts";
import { type AdapterRow, adapterObjectKey } from "./adapter-store.ts";
import { type LoraConfig, parseLoraConfig } from "./lora-config.ts";
import { checkLoraTensors } from "./lora-shapes.ts";
import { parseSafetensors } from "./safetensors.ts";
import { adapterFiles } from "./signed-url.ts";
import type { UploadForm } from "./upload-form.ts";

/** A checked adapter_config.json and the base model it is checked against. */
export type CheckedConfig = { config: LoraConfig; model: BaseModel };

/**
 * Checks adapter_config.json for this tenant: a LoRA the backends serve, on a
 * registered base model the tenant may use (and `baseModelField` names, if
 * given), with a rank within both the backends' and the tenant's caps.
 */
export async function checkAdapterConfig(
  env: Env,
  principal: Principal,
  configBytes: Uint8Array,
  baseModelField: string | null,
): Promise<CheckedConfig> {
  let configText: string;
  try {
    configText = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(configBytes);
  } catch {
    throw adapterError("adapter_config_invalid_json", "adapter_config.json: not UTF-8");
  }
  const config = parseLoraConfig(configText);
  if (baseModelField !== null && baseModelField !== config.baseModel) {
    throw adapterError(
      "base_model_mismatch",
      `adapter_config.json was trained on ${config.baseModel}, but base_model says ${baseModelField}`,
    );
  }
  const allowed = principal.allowedBaseModels;
  if (allowed.length > 0 && !allowed.includes(config.baseModel)) {
    throw adapterError(
      "base_model_not_allowed",
      `This tenant may not use base model ${config.baseModel}`,
    );
  }
  const model = await getBaseModel(env.DB, config.baseModel).catch(() => {
    throw adapterError(
      "unknown_base_model",
      `adapter_config.json names base model ${config.baseModel}, which no backend serves`,
    );
  });
  const maxRank = Math.min(model.max_lora_rank, principal.adapterQuota.maxRank);
  if (config.rank > maxRank) {
    throw adapterError("rank_too_large", `Rank ${config.rank} is above the limit of ${maxRank}`);
  }
  return { config, model };
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
  const { config, model } = await checkAdapterConfig(env, principal, form.config, form.baseModel);
  checkLoraTensors(parseSafetensors(form.weights), config, model);
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
