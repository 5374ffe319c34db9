import { BodyNotJsonError, BodyTooLargeError, readBodyBytes, readJsonBody } from "@lorafleet/api";
import { ApiError } from "./errors.ts";

const mib = 1024 * 1024;

/**
 * Largest request bodies, in bytes, by kind of route. Inference bodies stay
 * under half of gpu-backend's own limit (16 MiB, `maxBodyBytes`) so the gateway
 * refuses first and the `lorafleet` field it adds always fits. Control-plane
 * JSON (admin, keys, batches, multipart completion) is small; 1 MiB still holds
 * a completion list of the 10 000 parts R2 allows. Uploads have limits of their
 * own (adapter_too_large, file_too_large, part_too_large; see gateway/README.md).
 */
export const bodyLimits = { inference: 8 * mib, control: mib } as const;

/** The shared reader's refusals (@lorafleet/api) in the gateway's words; 413s carry `tooLargeCode`. */
function inGatewayWords(error: unknown, tooLargeCode: string): unknown {
  if (error instanceof BodyTooLargeError) {
    return new ApiError(
      413,
      tooLargeCode,
      `The request body is larger than ${error.maxBytes} bytes`,
    );
  }
  if (error instanceof BodyNotJsonError) {
    const what = error.reason === "utf8" ? "UTF-8" : "JSON";
    return new ApiError(400, "invalid_json", `The request body is not valid ${what}`);
  }
  return error;
}

/**
 * The whole body, refused with 413 `code` as soon as it passes `maxBytes`: at once
 * when content-length says so, else while streaming, before the rest is read.
 *
 * @example const bytes = await readBody(c.req.raw, partBytes, "part_too_large");
 */
export async function readBody(
  request: Request,
  maxBytes: number,
  code = "request_too_large",
): Promise<Uint8Array> {
  return readBodyBytes(request, maxBytes).catch((error: unknown) => {
    throw inGatewayWords(error, code);
  });
}

/**
 * The body as strict UTF-8 JSON, at most `maxBytes` (413 `request_too_large`); bytes that
 * are not UTF-8, or text that is not JSON, are a 400 `invalid_json`.
 *
 * @example const raw = await readJson(c.req.raw, bodyLimits.inference);
 */
export async function readJson(request: Request, maxBytes: number): Promise<unknown> {
  return readJsonBody(request, maxBytes).catch((error: unknown) => {
    throw inGatewayWords(error, "request_too_large");
  });
}
