import type { DailyUsageRow } from "./daily-usage.ts";

const columns = [
  "day",
  "model",
  "requests",
  "prompt_tokens",
  "completion_tokens",
  "errors",
] as const;

/** RFC 4180 field: quoted when it holds a comma, quote or line break. */
function field(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * Daily usage rows as CSV with a header line.
 *
 * @example usageCsv([{ day: "2026-11-26", model: "bot", requests: 1, ... }])
 */
export function usageCsv(rows: DailyUsageRow[]): string {
  const lines = [columns.join(",")];
  for (const row of rows) lines.push(columns.map((c) => field(row[c])).join(","));
  return `${lines.join("\r\n")}\r\n`;
}
