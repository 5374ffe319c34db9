import { adapterError } from "./adapter-error.ts";
import { maxConfigBytes } from "./lora-config.ts";

/** Adapter names: what tenants put in the OpenAI `model` field (no "/", which separates the tenant). */
export const adapterName = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Pickle-based checkpoint formats: loading one can run arbitrary code. */
const pickleFile = /\.(bin|pt|pth|pkl|pickle|ckpt)$/i;
/** Room in a multipart body for its form fields and boundaries, beyond the files. */
export const formSlackBytes = 64 * 1024;

export type UploadForm = {
  name: string;
  baseModel: string | null;
  config: Uint8Array;
  weights: Uint8Array;
};

/** Reads the multipart body: a `name` field, optional `base_model`, and the two files by filename. */
export async function readUploadForm(request: Request, maxBytes: number): Promise<UploadForm> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes + maxConfigBytes + formSlackBytes) {
    throw adapterError(
      "adapter_too_large",
      `The upload is ${declared} bytes; this tenant's adapter limit is ${maxBytes}`,
      413,
    );
  }
  if (!request.headers.get("content-type")?.startsWith("multipart/form-data")) {
    throw adapterError("invalid_upload", "Send the adapter as multipart/form-data", 415);
  }
  let form: FormData;
  try {
    form = await request.formData();
  } catch {
    throw adapterError("invalid_upload", "The multipart body could not be parsed");
  }
  const name = form.get("name");
  if (typeof name !== "string" || !adapterName.test(name)) {
    throw adapterError(
      "invalid_adapter_name",
      "name must be 1-64 letters, digits, dots, dashes or underscores",
    );
  }
  const baseModel = form.get("base_model");
  let config: Uint8Array | null = null;
  let weights: Uint8Array | null = null;
  for (const [, value] of form.entries()) {
    if (typeof value === "string") continue;
    const file = value as File;
    if (pickleFile.test(file.name)) {
      throw adapterError(
        "pickle_not_accepted",
        `${file.name} is a pickle checkpoint; upload adapter_model.safetensors instead`,
        415,
      );
    }
    if (file.name === "adapter_config.json") {
      if (file.size > maxConfigBytes)
        throw adapterError(
          "adapter_too_large",
          `adapter_config.json is over ${maxConfigBytes} bytes`,
          413,
        );
      config = new Uint8Array(await file.arrayBuffer());
    } else if (file.name === "adapter_model.safetensors") {
      if (file.size > maxBytes) {
        throw adapterError(
          "adapter_too_large",
          `adapter_model.safetensors is ${file.size} bytes; this tenant's limit is ${maxBytes}`,
          413,
        );
      }
      weights = new Uint8Array(await file.arrayBuffer());
    } else {
      throw adapterError(
        "unexpected_file",
        `Unexpected file ${file.name}: send adapter_config.json and adapter_model.safetensors`,
      );
    }
  }
  if (config === null) throw adapterError("missing_file", "adapter_config.json is missing");
  if (weights === null) throw adapterError("missing_file", "adapter_model.safetensors is missing");
  return {
    name,
    baseModel: typeof baseModel === "string" && baseModel !== "" ? baseModel : null,
    config,
    weights,
  };
}
