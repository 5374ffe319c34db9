import { ApiError } from "../errors.ts";

/** What `group_by` may name: the UTC day, the model as the client named it, the adapter (by id). */
export const usageGroups = ["day", "model", "adapter"] as const;
export type UsageGroup = (typeof usageGroups)[number];

/** Each group's value, computed from a usage row, and the column it becomes. */
const groupExpression: Record<UsageGroup, string> = {
  day: "strftime('%Y-%m-%d', created_at / 1000, 'unixepoch')",
  model: "model",
  adapter: "adapter_id",
};
/** What the answer shows of each group. */
const groupOutput: Record<UsageGroup, string> = {
  day: "day",
  model: "model",
  adapter: "adapter_id, (SELECT name FROM adapters WHERE id = adapter_id) AS adapter",
};
const groupKey: Record<UsageGroup, string> = { day: "day", model: "model", adapter: "adapter_id" };

/** Latency percentiles in milliseconds (nearest rank) over the group's `ok` requests; null when it has none. */
export type LatencyPercentiles = { p50: number | null; p90: number | null; p99: number | null };

type SummaryRow = {
  day?: string;
  model?: string;
  adapter_id?: string | null;
  adapter?: string | null;
  requests: number;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  cached_tokens: number | null;
  errors: number | null;
  p50: number | null;
  p90: number | null;
  p99: number | null;
};

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

/** `group_by`: a comma-separated list of distinct usageGroups; default "model". */
export function parseGroupBy(text: string | undefined): UsageGroup[] {
  if (text === undefined) return ["model"];
  const names = text.split(",");
  const known = (name: string): name is UsageGroup =>
    (usageGroups as readonly string[]).includes(name);
  if (!names.every(known) || new Set(names).size !== names.length) {
    throw new ApiError(
      400,
      "invalid_request",
      `group_by must be distinct names out of ${usageGroups.join(", ")}, joined by commas`,
      { param: "group_by" },
    );
  }
  return names;
}

/**
 * One statement summing the tenant's rows in [start, end) per `groups` (all of
 * them in one line when empty). Percentiles need the rows in order: each `ok`
 * row is ranked by latency within its group, and the p-th percentile is the
 * row of rank ceil(p * n / 100) (nearest rank), so D1 returns one line per group.
 */
function summaryStatement(
  db: D1Database,
  groups: UsageGroup[],
  tenantId: string,
  start: number,
  end: number,
): D1PreparedStatement {
  const keys = groups.map((g) => groupKey[g]);
  const expressions = groups.map((g) => groupExpression[g]);
  const partition = (extra: string[]) =>
    expressions.length + extra.length === 0
      ? ""
      : `PARTITION BY ${[...expressions, ...extra].join(", ")}`;
  const leading = (columns: string[]) => columns.map((column) => `${column}, `).join("");
  const percentile = (p: number) =>
    `MIN(CASE WHEN outcome = 'ok' AND latency_rank = (${p} * ok_count + 99) / 100 THEN latency_ms END) AS p${p}`;
  const sql = `
    WITH ranked AS (
      SELECT ${leading(groups.map((g) => `${groupExpression[g]} AS ${groupKey[g]}`))}prompt_tokens, completion_tokens, cached_tokens, status, outcome, latency_ms,
        ROW_NUMBER() OVER (${partition(["outcome = 'ok'"])} ORDER BY latency_ms) AS latency_rank,
        SUM(outcome = 'ok') OVER (${partition([])}) AS ok_count
      FROM usage WHERE tenant_id = ? AND created_at >= ? AND created_at < ?
    )
    SELECT ${leading(groups.map((g) => groupOutput[g]))}COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens,
      SUM(completion_tokens) AS completion_tokens, SUM(cached_tokens) AS cached_tokens,
      SUM(status >= 400 OR outcome = 'backend_error') AS errors,
      ${[50, 90, 99].map(percentile).join(", ")}
    FROM ranked
    ${keys.length === 0 ? "" : `GROUP BY ${keys.join(", ")} ORDER BY ${keys.join(", ")}`}`;
  return db.prepare(sql).bind(tenantId, start, end);
}

/** A summary line: the group's keys, then its counts. */
function line(row: SummaryRow) {
  const {
    p50,
    p90,
    p99,
    requests,
    prompt_tokens,
    completion_tokens,
    cached_tokens,
    errors,
    ...keys
  } = row;
  const prompt = prompt_tokens ?? 0;
  const completion = completion_tokens ?? 0;
  return {
    ...keys,
    requests,
    prompt_tokens: prompt,
    // as in a response's usage: the prompt tokens the backends found in their prefix caches
    prompt_tokens_details: { cached_tokens: cached_tokens ?? 0 },
    completion_tokens: completion,
    total_tokens: prompt + completion,
    errors: errors ?? 0,
    latency_ms: { p50, p90, p99 } satisfies LatencyPercentiles,
  };
}

/**
 * A tenant's usage in [start, end) (unix ms; default: the current UTC month):
 * totals and one line per group (`group_by`, default per model). Errors are
 * requests answered with a status >= 400 or whose stream the backend ended
 * with an error; latency is the gateway's `latency_ms` (arrival to the last
 * byte) of `ok` requests only, so refusals do not pull it down.
 *
 * @example await summarizeUsage(env.DB, "tn_1", { groupBy: "day,model" })
 */
export async function summarizeUsage(
  db: D1Database,
  tenantId: string,
  query: { start?: string; end?: string; groupBy?: string },
) {
  const now = new Date();
  const start = bound("start", query.start, Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
  const end = bound("end", query.end, Number.MAX_SAFE_INTEGER);
  const groups = parseGroupBy(query.groupBy);
  const [grouped, total] = await db.batch<SummaryRow>([
    summaryStatement(db, groups, tenantId, start, end),
    summaryStatement(db, [], tenantId, start, end),
  ]);
  // An aggregate without GROUP BY always answers one row, zeros and nulls included.
  const totalRow = total?.results[0];
  if (totalRow === undefined) throw new Error("the usage total query returned no row");
  return {
    object: "usage",
    tenant_id: tenantId,
    start,
    end: end === Number.MAX_SAFE_INTEGER ? null : end,
    group_by: groups,
    ...line(totalRow),
    data: (grouped?.results ?? []).map(line),
  };
}
