import { backendCredential } from "../auth/backend-credential.ts";
import type { Env } from "../env.ts";
import type { Backend, BackendDirectory } from "../routing/backend-directory.ts";

/** At most this many backends are tried for one request. */
export const maxAttempts = 3;

export type Forwarded = { backend: Backend; response: Response; waitedMs: number };

/**
 * Sends one request to the first backend in `ranked` that answers without a
 * 5xx. A backend that cannot be reached or answers 5xx (before any body was
 * streamed, so nothing reached the client yet) is marked failed in this
 * isolate and the next one is tried; so is one that refuses the gateway's
 * credential (401/403: its --backend-secret is not the current one, e.g. during a
 * rotation), since that is never the client's fault. A 429 (its queue is full)
 * moves on to the next backend without marking it; the last backend's 429 is returned.
 * `body` is built per backend: its adapter URLs are signed for that backend.
 * When `clientGone` aborts, the call in flight is aborted and nothing more is
 * tried (the backend is not blamed). The caller must call
 * `directory.end(backend.id)` when it is done with the response.
 *
 * Returns null when every attempt failed.
 */
export async function forwardWithFailover(
  env: Env,
  directory: BackendDirectory,
  ranked: Backend[],
  path: string,
  body: (backend: Backend) => Promise<string>,
  requestId: string,
  now: () => number,
  clientGone?: AbortSignal,
): Promise<Forwarded | null> {
  let waitedMs = 0;
  const attempts = ranked.slice(0, maxAttempts);
  for (const [attempt, backend] of attempts.entries()) {
    const started = now();
    directory.begin(backend.id);
    let failure: { event: string; detail: string };
    try {
      const response = await fetch(`${backend.url}${path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${await backendCredential(env.BACKEND_SECRET, backend.id, backend.secretVersion)}`,
          "x-request-id": requestId,
        },
        body: await body(backend),
        signal: clientGone ?? null,
      });
      waitedMs += now() - started;
      const busy = response.status === 429 && attempt < attempts.length - 1;
      const refusedUs = response.status === 401 || response.status === 403;
      if (response.status < 500 && !busy && !refusedUs) return { backend, response, waitedMs };
      await response.body?.cancel();
      if (busy) {
        directory.end(backend.id);
        log("backend_busy", requestId, backend.id, "HTTP 429");
        continue;
      }
      failure = {
        event: refusedUs ? "backend_refused_credential" : "backend_5xx",
        detail: `HTTP ${response.status}`,
      };
    } catch (error) {
      waitedMs += now() - started;
      if (clientGone?.aborted) {
        directory.end(backend.id);
        return null;
      }
      failure = { event: "backend_unreachable", detail: String(error) };
    }
    directory.end(backend.id);
    directory.markFailed(backend.id);
    log(failure.event, requestId, backend.id, failure.detail);
  }
  return null;
}

function log(event: string, requestId: string, backendId: string, detail: string): void {
  console.warn(JSON.stringify({ level: "warn", event, requestId, backendId, detail }));
}
