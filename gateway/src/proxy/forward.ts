import type { Env } from "../env.ts";
import type { Backend, BackendDirectory } from "../routing/backend-directory.ts";

/** At most this many backends are tried for one request. */
export const maxAttempts = 3;

export type Forwarded = { backend: Backend; response: Response; waitedMs: number };

/**
 * Sends one request to the first backend in `ranked` that answers without a
 * 5xx. A backend that cannot be reached or answers 5xx (before any body was
 * streamed, so nothing reached the client yet) is marked failed in this
 * isolate and the next one is tried. The caller must call
 * `directory.end(backend.id)` when it is done with the response.
 *
 * Returns null when every attempt failed.
 */
export async function forwardWithFailover(
  env: Env,
  directory: BackendDirectory,
  ranked: Backend[],
  path: string,
  body: string,
  requestId: string,
  now: () => number,
): Promise<Forwarded | null> {
  let waitedMs = 0;
  for (const backend of ranked.slice(0, maxAttempts)) {
    const started = now();
    directory.begin(backend.id);
    try {
      const response = await fetch(`${backend.url}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${env.BACKEND_SECRET}`,
          "x-request-id": requestId,
        },
        body,
      });
      waitedMs += now() - started;
      if (response.status < 500) return { backend, response, waitedMs };
      await response.body?.cancel();
      log("backend_5xx", requestId, backend.id, `HTTP ${response.status}`);
    } catch (error) {
      waitedMs += now() - started;
      log("backend_unreachable", requestId, backend.id, String(error));
    }
    directory.end(backend.id);
    directory.markFailed(backend.id);
  }
  return null;
}

function log(event: string, requestId: string, backendId: string, detail: string): void {
  console.warn(JSON.stringify({ level: "warn", event, requestId, backendId, detail }));
}
