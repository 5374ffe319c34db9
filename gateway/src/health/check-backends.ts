import type { Env } from "../env.ts";
import type { BackendDirectory } from "../routing/backend-directory.ts";

const timeoutMs = 5_000;

/**
 * The cron health check: `GET {url}/health` on every backend. A 200 marks it
 * healthy and records the `load` it reports (running + waiting requests, if
 * given); anything else, or no answer in 5 s, marks it unhealthy with the reason.
 */
export async function checkBackends(env: Env, directory: BackendDirectory): Promise<void> {
  const { results } = await env.DB.prepare("SELECT id, url FROM backends").all<{
    id: string;
    url: string;
  }>();
  await Promise.all(
    results.map(async (backend) => {
      const { healthy, load, error } = await probe(env, backend.url);
      await env.DB.prepare(
        "UPDATE backends SET healthy = ?, load = ?, last_checked_at = ?, last_error = ? WHERE id = ?",
      )
        .bind(healthy ? 1 : 0, load, Date.now(), error, backend.id)
        .run();
    }),
  );
  directory.invalidate();
}

async function probe(
  env: Env,
  url: string,
): Promise<{ healthy: boolean; load: number; error: string | null }> {
  try {
    const response = await fetch(`${url}/health`, {
      headers: { authorization: `Bearer ${env.BACKEND_SECRET}` },
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
