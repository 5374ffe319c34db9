import { parseArgs } from "node:util";
import { dailyUsage, totalsBy, usage, usageCsv } from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import { type CliContext, configOption, loadConfig, tenantClient } from "../context.ts";
import { table } from "../table.ts";

export const usageHelp = `lorafleet usage [--days 14] [--csv]
  Requests, tokens and errors per UTC day and model; --csv prints CSV instead.`;

export async function usageCommand(ctx: CliContext, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { ...configOption, days: { type: "string", default: "14" }, csv: { type: "boolean" } },
  });
  const days = Number(values.days);
  if (!Number.isInteger(days) || days < 1 || days > 92) throw new CliError("--days must be 1-92");
  const client = tenantClient(loadConfig(ctx, values.config));
  const rows = await dailyUsage((s, e) => usage(client, s, e), days, Date.now());
  if (values.csv) {
    ctx.stdout.write(usageCsv(rows));
    return;
  }
  const totals = totalsBy(rows, () => "all")[0] ?? { requests: 0, tokens: 0, errors: 0 };
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
  ctx.stdout.write(
    `last ${days} days: ${totals.requests} requests, ${totals.tokens} tokens, ${totals.errors} errors\n`,
  );
}
