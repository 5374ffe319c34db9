// One file over HTTP(S) with undici, streamed to disk while its sha256 is computed.

import { createHash } from "node:crypto";
import { open } from "node:fs/promises";
import { type Dispatcher, errors, request } from "undici";
import { AdapterDownloadFailed, AdapterTooLarge, AdapterUrlRefused, redactUrl } from "./errors.ts";

export interface DownloadOptions {
  /** refuse larger files (by Content-Length up front, by count while streaming) */
  maxBytes: number;
  /** the whole download, headers to last byte */
  totalTimeoutMs: number;
  dispatcher: Dispatcher;
  /** sent as `authorization: Bearer <credential>`; the caller vouches for the URL's origin */
  credential?: string | undefined;
}

export interface Downloaded {
  bytes: number;
  /** lowercase hex */
  sha256: string;
}

/**
 * GETs `url` into the new file `dest`. Rejects with AdapterDownloadFailed (status, timeout,
 * body cut short), AdapterUrlRefused (a redirect: never followed, it could lead anywhere)
 * or AdapterTooLarge; the caller removes `dest` on failure.
 */
export async function downloadFile(
  url: string,
  dest: string,
  limits: DownloadOptions,
): Promise<Downloaded> {
  const where = redactUrl(url);
  const signal = AbortSignal.timeout(limits.totalTimeoutMs);
  let response: Dispatcher.ResponseData;
  try {
    response = await request(url, {
      method: "GET",
      dispatcher: limits.dispatcher,
      signal,
      headers:
        limits.credential === undefined ? {} : { authorization: `Bearer ${limits.credential}` },
    });
  } catch (error) {
    throw failure(where, error, limits.totalTimeoutMs);
  }
  const { statusCode, headers, body } = response;
  if (statusCode >= 300 && statusCode < 400) {
    await body.dump().catch(() => {});
    throw new AdapterUrlRefused(
      `GET ${where} answered HTTP ${statusCode} (a redirect): redirects are not followed`,
    );
  }
  if (statusCode !== 200) {
    await body.dump().catch(() => {});
    throw new AdapterDownloadFailed(`GET ${where} answered HTTP ${statusCode}`, statusCode);
  }
  const declared =
    headers["content-length"] === undefined ? undefined : Number(headers["content-length"]);
  if (declared !== undefined && declared > limits.maxBytes) {
    await body.dump().catch(() => {});
    throw new AdapterTooLarge(
      `${where} is ${declared} bytes, over the limit of ${limits.maxBytes}`,
    );
  }
  const hash = createHash("sha256");
  const file = await open(dest, "wx");
  let bytes = 0;
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      bytes += chunk.byteLength;
      if (bytes > limits.maxBytes) {
        body.destroy();
        throw new AdapterTooLarge(`${where} sent more than the limit of ${limits.maxBytes} bytes`);
      }
      hash.update(chunk);
      await file.write(chunk);
    }
  } catch (error) {
    if (error instanceof AdapterTooLarge) throw error;
    throw failure(where, error, limits.totalTimeoutMs);
  } finally {
    await file.close();
  }
  if (declared !== undefined && bytes !== declared) {
    throw new AdapterDownloadFailed(
      `GET ${where}: body truncated at ${bytes} of ${declared} bytes`,
    );
  }
  return { bytes, sha256: hash.digest("hex") };
}

function failure(where: string, error: unknown, totalTimeoutMs: number): AdapterDownloadFailed {
  const e = error as Error & { code?: string };
  if (e.name === "TimeoutError" || e.name === "AbortError") {
    return new AdapterDownloadFailed(`GET ${where} timed out after ${totalTimeoutMs} ms`);
  }
  if (e instanceof errors.HeadersTimeoutError || e instanceof errors.BodyTimeoutError) {
    return new AdapterDownloadFailed(`GET ${where} timed out: ${e.message}`);
  }
  if (e instanceof errors.ConnectTimeoutError) {
    return new AdapterDownloadFailed(`GET ${where}: connect timed out`);
  }
  if (e instanceof errors.ResponseContentLengthMismatchError || e instanceof errors.SocketError) {
    return new AdapterDownloadFailed(`GET ${where}: body truncated (${e.message})`);
  }
  return new AdapterDownloadFailed(`GET ${where} failed: ${e.code ?? e.name}: ${e.message}`);
}
