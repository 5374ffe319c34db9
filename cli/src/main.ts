#!/usr/bin/env node
// The lorafleet CLI: `npx lorafleet <command>` (run by Node >= 22.18, which runs .ts).
import { GatewayError } from "@lorafleet/console/api";
import { CliError } from "./cli-error.ts";
import { adapters, adaptersHelp } from "./commands/adapters.ts";
import { chat, chatHelp } from "./commands/chat.ts";
import { keys, keysHelp } from "./commands/keys.ts";
import { login, loginHelp } from "./commands/login.ts";
import { usageCommand, usageHelp } from "./commands/usage.ts";
import type { CliContext } from "./context.ts";

const commands: Record<string, (ctx: CliContext, args: string[]) => Promise<void>> = {
  login,
  keys,
  adapters,
  usage: usageCommand,
  chat,
};

const help = `usage: lorafleet <command> [options]   (every command takes --config <file>)

${[loginHelp, keysHelp, adaptersHelp, usageHelp, chatHelp].join("\n\n")}
`;

/** Runs one command line; returns the exit code (0 ok, 1 the gateway refused, 2 bad usage). */
export async function main(argv: string[], ctx: CliContext): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    ctx.stdout.write(help);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    ctx.stderr.write(`lorafleet: unknown command ${name}\n\n${help}`);
    return 2;
  }
  try {
    await command(ctx, args);
    return 0;
  } catch (error) {
    if (error instanceof GatewayError) {
      ctx.stderr.write(`lorafleet: ${error.message} (${error.code}, HTTP ${error.status})\n`);
      return 1;
    }
    // parseArgs throws TypeErrors with codes like ERR_PARSE_ARGS_UNKNOWN_OPTION.
    const code = (error as { code?: unknown }).code;
    if (
      error instanceof CliError ||
      (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))
    ) {
      ctx.stderr.write(`lorafleet: ${(error as Error).message}\n`);
      return 2;
    }
    throw error;
  }
}

if (import.meta.main) {
  const { stdin, stdout, stderr, env } = process;
  process.exitCode = await main(process.argv.slice(2), { env, stdin, stdout, stderr });
}
