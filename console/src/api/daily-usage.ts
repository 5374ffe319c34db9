const dayMs = 86_400_000;

/** One model's usage on one UTC day. */
export type DailyUsageRow = {
  /** YYYY-MM-DD (UTC) */
  day: string;
  model: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  errors: number;
};

/** The last `days` UTC days ending with today's, oldest first: [start, end) unix ms each. */
export function utcDays(days: number, now: number): { day: string; start: number; end: number }[] {
  const today = Math.floor(now / dayMs) * dayMs;
  return Array.from({ length: days }, (_, i) => {
    const start = today - (days - 1 - i) * dayMs;
    return { day: new Date(start).toISOString().slice(0, 10), start, end: start + dayMs };
  });
}

/** Sums rows by a key (a day or a model), in first-seen order. */
export function totalsBy(
  rows: DailyUsageRow[],
  key: (row: DailyUsageRow) => string,
): { key: string; requests: number; tokens: number; errors: number }[] {
  const totals = new Map<
    string,
    { key: string; requests: number; tokens: number; errors: number }
  >();
  for (const row of rows) {
    const k = key(row);
    const t = totals.get(k) ?? { key: k, requests: 0, tokens: 0, errors: 0 };
    t.requests += row.requests;
    t.tokens += row.prompt_tokens + row.completion_tokens;
    t.errors += row.errors;
    totals.set(k, t);
  }
  return [...totals.values()];
}
