import { parseArgs } from "node:util";
import { groupedUsage, usageCsv, usageReport } from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import { type CliContext, configOption, loadConfig, tenantClient } from "../context.ts";
import { table } from "../table.ts";

export const usageHelp = `lorafleet usage [--days 14] [--csv]
  Requests, tokens and errors per UTC day and model, latency percentiles of the period;
  --csv prints the daily rows as CSV instead.`;

export async function usageCommand(ctx: CliContext, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { ...configOption, days: { type: "string", default: "14" }, csv: { type: "boolean" } },
  });
  const days = Number(values.days);
  if (!Number.isInteger(days) || days < 1 || days > 92) throw new CliError("--days must be 1-92");
  const client = tenantClient(loadConfig(ctx, values.config));
  const report = await usageReport((s, e, g) => groupedUsage(client, s, e, g), days, Date.now());
  const rows = report.daily;
  if (values.csv) {
    ctx.stdout.write(usageCsv(rows));
    return;
  }
  const { totals } = report;
  const ms = (value: number | null) => (value === null ? "-" : `${value} ms`);
  if (rows.length > 0) {
    ctx.stdout.write(
      `${table(
        ["DAY", "MODEL", "REQUESTS", "PROMPT", "COMPLETION", "ERRORS"],
        rows.map((r) => [
          r.day,
          r.model,
          r.requests,
          r.prompt_tokens,
          r.completion_tokens,
          r.errors,
        ]),
      )}\n\n`,
    );
  }
  const latency = totals.latency_ms;
  ctx.stdout.write(
    `last ${days} days: ${totals.requests} requests, ${totals.total_tokens} tokens, ` +
      `${totals.errors} errors; latency p50 ${ms(latency.p50)}, p90 ${ms(latency.p90)}, ` +
      `p99 ${ms(latency.p99)}\n`,
  );
}
