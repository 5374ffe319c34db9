import { safetensorsHeaderEnd } from "@lorafleet/api";
import { Hono } from "hono";
import { z } from "zod";
import type { KeyResolver } from "../auth/key-resolver.ts";
import { apiKeyAuth } from "../auth/middleware.ts";
import type { Principal } from "../auth/principal.ts";
import { sha256Hex, toHex } from "../crypto.ts";
import type { AppEnv, Env } from "../env.ts";
import { ApiError } from "../errors.ts";
import { newId } from "../ids.ts";
import { readBody } from "../request-body.ts";
import { parseJsonBody } from "../validation.ts";
import { adapterError, underAdapterRules } from "./adapter-error.ts";
import { type AdapterRow, adapterObjectKey, adapterView } from "./adapter-store.ts";
import { maxConfigBytes } from "./lora-config.ts";
import {
  checkAdapterConfig,
  checkWeightsHeader,
  failAdapter,
  getAdapterRow,
  insertAdapterRow,
} from "./upload.ts";
import { adapterName, formSlackBytes } from "./upload-form.ts";

/** Size of every part but the last (R2 needs equal parts of at least 5 MiB). */
export const partBytes = 8 * 1024 * 1024;
const maxParts = 10_000;

const weightsKey = (id: string) => adapterObjectKey(id, "adapter_model.safetensors");

const completeSchema = z.strictObject({
  parts: z
    .array(
      z.strictObject({
        part_number: z.number().int().min(1).max(maxParts),
        etag: z.string().min(1),
      }),
    )
    .min(1),
});

/**
 * /v1/adapters/uploads: adapters too large for one request. The config comes
 * first and is checked at once (status `uploaded`); the weights follow as R2
 * multipart parts; `complete` checks the stored file the same way as a direct
 * upload (size, safetensors header read by range, shapes) and hashes it as a
 * stream. A file that fails leaves the adapter `failed` with the reason and no
 * files; a good one becomes `ready`.
 */
export function multipartUploadRoutes(keys: KeyResolver, now: () => number) {
  const app = new Hono<AppEnv>();
  app.use(apiKeyAuth(keys, "adapters:write", now));

  app.post("/", async (c) => {
    const principal = c.get("principal");
    // Only the config travels here (the weights come as parts), so the body is bounded
    // by the config's limit plus room for the form fields.
    const bytes = await readBody(c.req.raw, maxConfigBytes + formSlackBytes, "adapter_too_large");
    const contentType = c.req.header("content-type") ?? "";
    const form = await new Response(bytes, { headers: { "content-type": contentType } })
      .formData()
      .catch(() => {
        throw adapterError(
          "invalid_upload",
          "Send name, weights_bytes and adapter_config.json as multipart/form-data",
          415,
        );
      });
    const name = form.get("name");
    if (typeof name !== "string" || !adapterName.test(name)) {
      throw adapterError(
        "invalid_adapter_name",
        "name must be 1-64 letters, digits, dots, dashes or underscores",
      );
    }
    const weightsBytes = Number(form.get("weights_bytes"));
    if (!Number.isSafeInteger(weightsBytes) || weightsBytes < 8) {
      throw adapterError(
        "invalid_upload",
        "weights_bytes must be the size of adapter_model.safetensors in bytes",
      );
    }
    if (weightsBytes > principal.adapterQuota.maxAdapterBytes) {
      throw adapterError(
        "adapter_too_large",
        `adapter_model.safetensors is ${weightsBytes} bytes; this tenant's limit is ${principal.adapterQuota.maxAdapterBytes}`,
        413,
      );
    }
    const configFile = form.get("files") ?? form.get("config");
    if (
      configFile === null ||
      typeof configFile === "string" ||
      configFile.name !== "adapter_config.json"
    ) {
      throw adapterError("missing_file", "adapter_config.json is missing");
    }
    if (configFile.size > maxConfigBytes) {
      throw adapterError(
        "adapter_too_large",
        `adapter_config.json is over ${maxConfigBytes} bytes`,
        413,
      );
    }
    const configBytes = new Uint8Array(await configFile.arrayBuffer());
    const baseModel = form.get("base_model");
    const { config } = await checkAdapterConfig(
      c.env,
      principal,
      configBytes,
      typeof baseModel === "string" && baseModel !== "" ? baseModel : null,
    );
    const id = newId("ad_");
    const upload = await c.env.FILES.createMultipartUpload(weightsKey(id));
    try {
      await insertAdapterRow(
        c.env,
        principal,
        {
          id,
          name,
          status: "uploaded",
          config,
          configBytes: configBytes.byteLength,
          configSha256: await sha256Hex(configBytes),
          weightsBytes,
          weightsSha256: "",
          uploadId: upload.uploadId,
        },
        now(),
      );
    } catch (error) {
      await upload.abort();
      throw error;
    }
    await c.env.FILES.put(adapterObjectKey(id, "adapter_config.json"), configBytes);
    return c.json(
      {
        ...adapterView(await getAdapterRow(c.env, id)),
        part_bytes: partBytes,
        parts: Math.ceil(weightsBytes / partBytes),
      },
      201,
    );
  });

  app.put("/:id/parts/:part", async (c) => {
    const row = await openUpload(c.env, c.get("principal"), c.req.param("id"));
    const part = Number(c.req.param("part"));
    if (
      !Number.isSafeInteger(part) ||
      part < 1 ||
      part > Math.ceil(row.weights_bytes / partBytes)
    ) {
      throw new ApiError(
        400,
        "invalid_part",
        `Part numbers run from 1 to ${Math.ceil(row.weights_bytes / partBytes)}`,
      );
    }
    const bytes = await readBody(c.req.raw, partBytes, "part_too_large");
    const upload = c.env.FILES.resumeMultipartUpload(weightsKey(row.id), row.upload_id ?? "");
    const uploaded = await upload.uploadPart(part, bytes);
    return c.json({ part_number: uploaded.partNumber, etag: uploaded.etag });
  });

  app.post("/:id/complete", async (c) => {
    const principal = c.get("principal");
    const row = await openUpload(c.env, principal, c.req.param("id"));
    const { parts } = await parseJsonBody(c, completeSchema);
    const claimed = await c.env.DB.prepare(
      "UPDATE adapters SET status = 'validating' WHERE id = ? AND status = 'uploaded'",
    )
      .bind(row.id)
      .run();
    if (claimed.meta.changes === 0)
      throw new ApiError(409, "upload_not_open", `Adapter ${row.name} is not awaiting parts`);
    try {
      await c.env.FILES.resumeMultipartUpload(weightsKey(row.id), row.upload_id ?? "").complete(
        parts.map((p) => ({ partNumber: p.part_number, etag: p.etag })),
      );
    } catch (error) {
      await failAdapter(c.env, row.id, `completing the upload failed: ${String(error)}`);
      throw adapterError("invalid_upload", `Completing the upload failed: ${String(error)}`);
    }
    try {
      const sha256 = await checkStoredWeights(c.env, principal, row);
      await c.env.DB.prepare(
        "UPDATE adapters SET status = 'ready', weights_sha256 = ?, upload_id = NULL WHERE id = ?",
      )
        .bind(sha256, row.id)
        .run();
    } catch (error) {
      await failAdapter(c.env, row.id, error instanceof Error ? error.message : String(error));
      throw error;
    }
    return c.json(adapterView(await getAdapterRow(c.env, row.id)));
  });

  return app;
}

/** The caller's adapter with an open multipart upload; another tenant's is a 404. */
async function openUpload(env: Env, principal: Principal, id: string): Promise<AdapterRow> {
  const row = await env.DB.prepare("SELECT * FROM adapters WHERE id = ? AND tenant_id = ?")
    .bind(id, principal.tenantId)
    .first<AdapterRow>();
  if (row === null) throw new ApiError(404, "adapter_not_found", `No adapter upload ${id}`);
  if (row.status !== "uploaded" || row.upload_id === null) {
    throw new ApiError(
      409,
      "upload_not_open",
      `Adapter ${row.name} is ${row.status}, not awaiting parts`,
    );
  }
  return row;
}

/** Checks the assembled weights in R2 and returns their SHA-256 (hex). */
async function checkStoredWeights(
  env: Env,
  principal: Principal,
  row: AdapterRow,
): Promise<string> {
  const head = await env.FILES.head(weightsKey(row.id));
  if (head === null) throw adapterError("missing_file", "adapter_model.safetensors was not stored");
  if (head.size !== row.weights_bytes) {
    throw adapterError(
      "size_mismatch",
      `adapter_model.safetensors is ${head.size} bytes, but weights_bytes said ${row.weights_bytes}`,
    );
  }
  const rangeBytes = async (length: number) => {
    const part = await env.FILES.get(weightsKey(row.id), { range: { offset: 0, length } });
    return new Uint8Array(await (part as R2ObjectBody).arrayBuffer());
  };
  const configObject = await env.FILES.get(adapterObjectKey(row.id, "adapter_config.json"));
  if (configObject === null)
    throw adapterError("missing_file", "adapter_config.json was not stored");
  // The shared rules' order: the config, then the weights' header, tensors and values.
  const checked = await checkAdapterConfig(
    env,
    principal,
    new Uint8Array(await configObject.arrayBuffer()),
    null,
  );
  const prefix = await rangeBytes(Math.min(8, head.size));
  const dataStart = underAdapterRules(() => safetensorsHeaderEnd(prefix, head.size));
  const values = checkWeightsHeader(await rangeBytes(dataStart), head.size, checked);
  const body = await env.FILES.get(weightsKey(row.id));
  if (body === null) throw adapterError("missing_file", "adapter_model.safetensors was not stored");
  // One pass over the file: hashed whole, and its data section past the weights' rules.
  const digest = new crypto.DigestStream("SHA-256");
  let position = 0;
  const toValues = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      const skip = Math.max(0, Math.min(chunk.length, dataStart - position));
      if (skip < chunk.length) values.add(chunk.subarray(skip));
      position += chunk.length;
      controller.enqueue(chunk);
    },
  });
  await body.body.pipeThrough(toValues).pipeTo(digest);
  underAdapterRules(() => values.check());
  return toHex(await digest.digest);
}
