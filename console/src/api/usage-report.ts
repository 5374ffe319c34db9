import { type DailyUsageRow, utcDays } from "./daily-usage.ts";
import type { GroupedUsage, GroupedUsageLine, UsageGroup } from "./types.ts";

/** What the usage page shows for a period. */
export type UsageReport = {
  /** the period's totals, errors and latency percentiles included */
  totals: GroupedUsage;
  /** one row per UTC day and model with traffic, oldest first (charts, CSV) */
  daily: DailyUsageRow[];
  /** one line per model as clients named it (base model or adapter), with its percentiles */
  perModel: GroupedUsageLine[];
};

function dailyRow(line: GroupedUsageLine): DailyUsageRow {
  if (line.day === undefined || line.model === undefined) {
    throw new Error("a group_by=day,model usage line lacks its day or model");
  }
  return {
    day: line.day,
    model: line.model,
    requests: line.requests,
    prompt_tokens: line.prompt_tokens,
    completion_tokens: line.completion_tokens,
    errors: line.errors,
  };
}

/**
 * The last `days` UTC days (today's included) in two calls: group_by=day,model
 * for the rows, group_by=model for the per-model lines, since percentiles of
 * days cannot be merged into a model's.
 *
 * @example await usageReport((s, e, g) => groupedUsage(client, s, e, g), 14, Date.now())
 */
export async function usageReport(
  fetchUsage: (start: number, end: number, groupBy: UsageGroup[]) => Promise<GroupedUsage>,
  days: number,
  now: number,
): Promise<UsageReport> {
  const period = utcDays(days, now);
  const start = period[0]?.start ?? now;
  const end = period.at(-1)?.end ?? now;
  const [byDay, byModel] = await Promise.all([
    fetchUsage(start, end, ["day", "model"]),
    fetchUsage(start, end, ["model"]),
  ]);
  return { totals: byModel, daily: byDay.data.map(dailyRow), perModel: byModel.data };
}
