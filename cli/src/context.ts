import { GatewayClient } from "@lorafleet/console/api";
import { CliError } from "./cli-error.ts";
import { type CliConfig, configPath, readConfig } from "./config-file.ts";

/** Everything a command touches outside itself, so tests can run commands in-process too. */
export type CliContext = {
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
};

/** The option every command takes. */
export const configOption = { config: { type: "string" } } as const;

export function loadConfig(ctx: CliContext, flag: string | undefined): CliConfig {
  const path = configPath(flag, ctx.env);
  const config = readConfig(path);
  if (config === null) {
    throw new CliError(`not logged in (no ${path}): run \`lorafleet login --url <gateway>\``);
  }
  return config;
}

export function tenantClient(config: CliConfig): GatewayClient {
  if (!config.apiKey) {
    throw new CliError(
      "no API key stored: run `lorafleet login --url <gateway>` with a tenant key",
    );
  }
  return new GatewayClient(config.url, config.apiKey);
}

export function adminClient(config: CliConfig): GatewayClient {
  if (!config.adminToken) {
    throw new CliError("no admin token stored: run `lorafleet login --admin --url <gateway>`");
  }
  return new GatewayClient(config.url, config.adminToken);
}
