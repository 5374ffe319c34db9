// Named errors of the adapter store. Messages never include a signed URL's query
// (it is a credential): only its origin and path.

export class AdapterStoreError extends Error {}

/** An adapter id or sha256 that cannot name a cache entry (path separators, bad hex). */
export class InvalidAdapterRef extends AdapterStoreError {
  override readonly name = "InvalidAdapterRef";
}

/**
 * An adapter URL this backend must not fetch: a scheme other than http(s), credentials,
 * or an origin outside `--adapter-url-allow`. Refused before any connection.
 */
export class AdapterUrlRefused extends AdapterStoreError {
  override readonly name = "AdapterUrlRefused";
}

/** The HTTP download failed: a status other than 200, a timeout, a cut or broken body. */
export class AdapterDownloadFailed extends AdapterStoreError {
  override readonly name = "AdapterDownloadFailed";
  /** the HTTP status, when one came */
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

/** adapter_model.safetensors does not hash to the sha256 the gateway recorded. */
export class AdapterChecksumMismatch extends AdapterStoreError {
  override readonly name = "AdapterChecksumMismatch";
}

/** A file is larger than the store accepts for one adapter. */
export class AdapterTooLarge extends AdapterStoreError {
  override readonly name = "AdapterTooLarge";
}

/** The disk cache cannot make room: everything else in it was used too recently. */
export class AdapterCacheFull extends AdapterStoreError {
  override readonly name = "AdapterCacheFull";
}

/** `https://host/path?sig=…` -> `https://host/path`, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return "<not a URL>";
  }
}
