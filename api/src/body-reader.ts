// The one bounded reader of request bodies, over Web `Request` streams (Workers and Node
// alike). It throws small typed errors; each server words them in its own error type.

/** The body passed `maxBytes` (declared in content-length, or counted while read). */
export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
  readonly maxBytes: number;
  constructor(maxBytes: number) {
    super(`the request body is larger than ${maxBytes} bytes`);
    this.maxBytes = maxBytes;
  }
}

/** The body is not UTF-8 (`reason: "utf8"`) or not JSON (`"syntax"`). */
export class BodyNotJsonError extends Error {
  override readonly name = "BodyNotJsonError";
  readonly reason: "utf8" | "syntax";
  constructor(reason: "utf8" | "syntax") {
    super(`the request body is not valid ${reason === "utf8" ? "UTF-8" : "JSON"}`);
    this.reason = reason;
  }
}

/**
 * The whole body, refused as soon as it passes `maxBytes`: at once when content-length
 * says so, else while streaming, before the rest is read (the stream is cancelled).
 *
 * @example const bytes = await readBodyBytes(request, 8 * 1024 * 1024);
 */
export async function readBodyBytes(request: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (Number(declared ?? 0) > maxBytes) {
    throw new BodyTooLargeError(maxBytes);
  }
  if (request.body === null) return new Uint8Array(0);
  if (declared !== null && /^[0-9]+$/.test(declared)) {
    // The transport frames the body to its declared length, so one native read is bounded
    // already (a read loop of promises was ~5 % of the gateway's CPU per request). A Request
    // made in code may hold more than it declares: its size is checked after.
    const bytes = new Uint8Array(await request.arrayBuffer());
    if (bytes.byteLength > maxBytes) throw new BodyTooLargeError(maxBytes);
    return bytes;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new BodyTooLargeError(maxBytes);
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
 * The body as JSON, at most `maxBytes`, decoded as strict UTF-8: JSON is UTF-8 (RFC 8259),
 * and replacing bad bytes with U+FFFD would send the model text the client never wrote.
 *
 * @example const json = await readJsonBody(request, 16 * 1024 * 1024);
 */
export async function readJsonBody(request: Request, maxBytes: number): Promise<unknown> {
  const bytes = await readBodyBytes(request, maxBytes);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    throw new BodyNotJsonError("utf8");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BodyNotJsonError("syntax");
  }
}
