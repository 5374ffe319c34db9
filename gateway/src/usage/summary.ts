import { ApiError } from "../errors.ts";

function bound(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ApiError(400, "invalid_request", `${name} must be unix milliseconds`, {
      param: name,
    });
  }
  return value;
}

/**
 * A tenant's usage in [start, end) (unix ms; default: the current UTC month):
 * totals and one line per model.
 */
export async function summarizeUsage(
  db: D1Database,
  tenantId: string,
  startText?: string,
  endText?: string,
) {
  const now = new Date();
  const start = bound("start", startText, Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const end = bound("end", endText, Number.MAX_SAFE_INTEGER);
  const { results } = await db
    .prepare(
      `SELECT model, COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens,
         SUM(completion_tokens) AS completion_tokens, SUM(status >= 400) AS errors
       FROM usage WHERE tenant_id = ? AND created_at >= ? AND created_at < ? GROUP BY model ORDER BY model`,
    )
    .bind(tenantId, start, end)
    .all<{
      model: string;
      requests: number;
      prompt_tokens: number;
      completion_tokens: number;
      errors: number;
    }>();
  const data = results.map((r) => ({ ...r, total_tokens: r.prompt_tokens + r.completion_tokens }));
  const sum = (f: (r: (typeof data)[number]) => number) => data.reduce((s, r) => s + f(r), 0);
  return {
    object: "usage",
    tenant_id: tenantId,
    start,
    end: end === Number.MAX_SAFE_INTEGER ? null : end,
    requests: sum((r) => r.requests),
    prompt_tokens: sum((r) => r.prompt_tokens),
    completion_tokens: sum((r) => r.completion_tokens),
    total_tokens: sum((r) => r.total_tokens),
    data,
  };
}
