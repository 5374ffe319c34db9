import { randomUUID } from "node:crypto";

export type Part =
  | { name: string; value: string }
  | { name: string; filename: string; bytes: Uint8Array };

/**
 * A multipart/form-data body (RFC 7578) as a stream that reports how many
 * bytes the HTTP client has taken, for an upload progress bar.
 */
export function multipartBody(parts: Part[]): {
  contentType: string;
  /** bytes of the whole body */
  total: number;
  stream: (onProgress: (sent: number) => void) => ReadableStream<Uint8Array>;
} {
  const boundary = `lorafleet-${randomUUID()}`;
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    const disposition =
      "filename" in part
        ? `form-data; name="${part.name}"; filename="${part.filename}"\r\ncontent-type: application/octet-stream`
        : `form-data; name="${part.name}"`;
    chunks.push(encoder.encode(`--${boundary}\r\ncontent-disposition: ${disposition}\r\n\r\n`));
    chunks.push("filename" in part ? part.bytes : encoder.encode(part.value));
    chunks.push(encoder.encode("\r\n"));
  }
  chunks.push(encoder.encode(`--${boundary}--\r\n`));
  const total = chunks.reduce((sum, c) => sum + c.length, 0);

  const sliceBytes = 64 * 1024;
  const stream = (onProgress: (sent: number) => void) => {
    let chunk = 0;
    let offset = 0;
    let sent = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        const current = chunks[chunk];
        if (current === undefined) {
          controller.close();
          return;
        }
        const piece = current.subarray(offset, offset + sliceBytes);
        offset += piece.length;
        if (offset >= current.length) {
          chunk += 1;
          offset = 0;
        }
        sent += piece.length;
        controller.enqueue(piece);
        onProgress(sent);
      },
    });
  };
  return { contentType: `multipart/form-data; boundary=${boundary}`, total, stream };
}
