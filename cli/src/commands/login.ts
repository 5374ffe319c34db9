import { parseArgs } from "node:util";
import { GatewayClient, keyScopes, listTenants } from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import { configPath, readConfig, writeConfig } from "../config-file.ts";
import { type CliContext, configOption } from "../context.ts";
import { readSecret } from "../read-secret.ts";

export const loginHelp = `lorafleet login --url <gateway> [--admin]
  Checks a tenant API key ($LORAFLEET_API_KEY, else stdin) or, with --admin, the
  operator's admin token ($LORAFLEET_ADMIN_TOKEN, else stdin), then stores it with the
  gateway URL in the config file (mode 0600).`;

export async function login(ctx: CliContext, args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { ...configOption, url: { type: "string" }, admin: { type: "boolean" } },
  });
  const path = configPath(values.config, ctx.env);
  const previous = readConfig(path);
  const url = (values.url ?? previous?.url ?? "").replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]+/.test(url)) throw new CliError("--url must be the gateway's http(s) URL");
  const kept = previous && previous.url === url ? previous : { url };

  if (values.admin) {
    const token = await readSecret(ctx, "LORAFLEET_ADMIN_TOKEN", "Admin token: ");
    if (!token) throw new CliError("no admin token given");
    const tenants = await listTenants(new GatewayClient(url, token));
    writeConfig(path, { ...kept, url, adminToken: token });
    ctx.stderr.write(
      `Logged in to ${url} as the operator (${tenants.length} tenants). Config: ${path}\n`,
    );
    return;
  }
  const key = await readSecret(ctx, "LORAFLEET_API_KEY", "API key: ");
  if (!key) throw new CliError("no API key given");
  const scopes = await keyScopes(new GatewayClient(url, key));
  writeConfig(path, { ...kept, url, apiKey: key });
  ctx.stderr.write(
    `Logged in to ${url} with key ${key.slice(0, 12)}… (scopes: ${scopes.join(", ") || "none"}). Config: ${path}\n`,
  );
}
