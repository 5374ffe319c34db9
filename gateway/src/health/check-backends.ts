import { backendCredential } from "../auth/backend-credential.ts";
import type { Env } from "../env.ts";
import type { BackendDirectory } from "../routing/backend-directory.ts";

const timeoutMs = 5_000;

/**
 * The cron health check: `GET {url}/health` on every backend. A 200 marks it
 * healthy and records the `load` it reports (running + waiting requests, if
 * given); anything else, or no answer in 5 s, marks it unhealthy with the reason.
 */
export async function checkBackends(env: Env, directory: BackendDirectory): Promise<void> {
  const { results } = await env.DB.prepare(
    "SELECT b.id, b.url, c.version FROM backends b JOIN backend_credentials c ON c.backend_id = b.id",
  ).all<{ id: string; url: string; version: number }>();
  await Promise.all(
    results.map(async (backend) => {
      const secret = await backendCredential(env.BACKEND_SECRET, backend.id, backend.version);
      const { healthy, load, error } = await probe(backend.url, secret);
      await env.DB.prepare(
        "UPDATE backends SET healthy = ?, load = ?, last_checked_at = ?, last_error = ? WHERE id = ?",
      )
        .bind(healthy ? 1 : 0, load, Date.now(), error, backend.id)
        .run();
    }),
  );
  directory.markStale();
}

async function probe(
  url: string,
  secret: string,
): Promise<{ healthy: boolean; load: number; error: string | null }> {
  try {
    const response = await fetch(`${url}/health`, {
      headers: { authorization: `Bearer ${secret}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) return { healthy: false, load: 0, error: `HTTP ${response.status}` };
    const body = (await response.json().catch(() => ({}))) as { load?: unknown };
    const load =
      typeof body.load === "number" && Number.isFinite(body.load)
        ? Math.max(0, Math.round(body.load))
        : 0;
    return { healthy: true, load, error: null };
  } catch (error) {
    return { healthy: false, load: 0, error: String(error) };
  }
}
