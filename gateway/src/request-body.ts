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

function tooLarge(maxBytes: number, code: string): ApiError {
  return new ApiError(413, code, `The request body is larger than ${maxBytes} bytes`);
}

/**
 * The whole body, refused with 413 as soon as it passes `maxBytes`: at once
 * when content-length says so, else while streaming, before the rest is read.
 *
 * @example const bytes = await readBodyBytes(c.req.raw, partBytes, "part_too_large");
 */
export async function readBodyBytes(
  request: Request,
  maxBytes: number,
  code = "request_too_large",
): Promise<Uint8Array> {
  if (Number(request.headers.get("content-length") ?? 0) > maxBytes) {
    throw tooLarge(maxBytes, code);
  }
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge(maxBytes, code);
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/**
 * The body as JSON, at most `maxBytes`. It is decoded as strict UTF-8: JSON is
 * UTF-8 (RFC 8259), and replacing bad bytes with U+FFFD would send the model
 * text the client never wrote. Both failures are 400 `invalid_json`.
 *
 * @example const raw = await readJsonBody(c.req.raw, bodyLimits.inference);
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const bytes = await readBodyBytes(request, maxBytes);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new ApiError(400, "invalid_json", "The request body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(400, "invalid_json", "The request body is not valid JSON");
  }
}
