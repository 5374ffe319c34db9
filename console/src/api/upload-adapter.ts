import { GatewayError } from "./gateway-error.ts";
import type { Adapter } from "./types.ts";

/** The two files of a PEFT LoRA adapter, as `save_pretrained` writes them. */
export const adapterFileNames = ["adapter_config.json", "adapter_model.safetensors"] as const;
export type AdapterFileName = (typeof adapterFileNames)[number];

const pickleSuffixes = [".bin", ".pt", ".pth", ".pkl", ".ckpt"];

/** What is wrong with one dropped file before anything is sent, or null. */
export function localFileProblem(name: string): string | null {
  if (pickleSuffixes.some((s) => name.endsWith(s))) {
    return "Pickle checkpoints are not accepted: save the adapter with safetensors (the PEFT default).";
  }
  if (!(adapterFileNames as readonly string[]).includes(name)) {
    return "Not part of a PEFT adapter: expected adapter_config.json or adapter_model.safetensors.";
  }
  return null;
}

// Which file a gateway validation code is about, so the console can show the
// error next to that file (gateway/README.md, "Adapter validation").
const configCodes = [
  "adapter_config_invalid_json",
  "adapter_config_invalid",
  "unsupported_target_module",
  "unsupported_adapter_feature",
  "scale_out_of_range",
  "unknown_base_model",
  "base_model_not_allowed",
  "base_model_mismatch",
  "rank_too_large",
];
const weightsCodes = [
  "adapter_too_large",
  "safetensors_truncated",
  "safetensors_header_too_large",
  "safetensors_bad_header",
  "safetensors_bad_tensor",
  "safetensors_offsets_mismatch",
  "unexpected_tensor",
  "shape_mismatch",
  "missing_tensor",
  "unsupported_dtype",
  "non_finite_weights",
  "weights_out_of_range",
];

/** The adapter file a validation error belongs to, or null for the upload as a whole. */
export function fileOfError(code: string): AdapterFileName | null {
  if (configCodes.includes(code)) return "adapter_config.json";
  if (weightsCodes.includes(code)) return "adapter_model.safetensors";
  return null;
}

/**
 * Uploads an adapter (multipart, as `curl -F`) with upload progress, which
 * only XMLHttpRequest reports in browsers.
 */
export function uploadAdapter(options: {
  baseUrl: string;
  authorization: string;
  name: string;
  files: File[];
  onProgress: (sentBytes: number, totalBytes: number) => void;
}): Promise<Adapter> {
  const form = new FormData();
  form.append("name", options.name);
  for (const file of options.files) form.append("files", file, file.name);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${options.baseUrl}/v1/adapters`);
    xhr.setRequestHeader("authorization", options.authorization);
    xhr.upload.onprogress = (event) => {
      if (event.lengthComputable) options.onProgress(event.loaded, event.total);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText) as Adapter);
      else reject(GatewayError.fromBody(xhr.status, xhr.responseText));
    };
    xhr.onerror = () =>
      reject(new GatewayError(0, "network_error", "The upload could not reach the gateway"));
    xhr.send(form);
  });
}
