import { parseArgs } from "node:util";
import {
  type GatewayClient,
  issueKey,
  listKeys,
  listTenants,
  revokeKey,
  type Scope,
} from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import { adminClient, type CliContext, configOption, loadConfig } from "../context.ts";
import { table } from "../table.ts";

export const keysHelp = `lorafleet keys list --tenant <name|id>
lorafleet keys create --tenant <name|id> [--scope inference]... [--name <n>] [--expires-days <d>]
lorafleet keys revoke <key id>
  Needs the admin token (lorafleet login --admin): the gateway issues keys through /admin.`;

const scopes: Scope[] = ["inference", "adapters:write", "admin"];

async function tenantId(client: GatewayClient, nameOrId: string | undefined): Promise<string> {
  if (!nameOrId) throw new CliError("--tenant is required");
  const tenant = (await listTenants(client)).find((t) => t.id === nameOrId || t.name === nameOrId);
  if (!tenant) throw new CliError(`no tenant named ${nameOrId}`);
  return tenant.id;
}

const date = (ms: number | null) => (ms === null ? "-" : new Date(ms).toISOString().slice(0, 16));

export async function keys(ctx: CliContext, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...configOption,
      tenant: { type: "string" },
      scope: { type: "string", multiple: true },
      name: { type: "string" },
      "expires-days": { type: "string" },
    },
  });
  const client = adminClient(loadConfig(ctx, values.config));
  const [action, id] = positionals;
  if (action === "list") {
    const list = await listKeys(client, await tenantId(client, values.tenant));
    ctx.stdout.write(
      `${table(
        ["ID", "PREFIX", "NAME", "SCOPES", "CREATED", "LAST USED", "STATUS"],
        list.map((k) => [
          k.id,
          `${k.prefix}…`,
          k.name ?? "",
          k.scopes.join(","),
          date(k.created_at),
          date(k.last_used_at),
          k.revoked_at === null ? "active" : "revoked",
        ]),
      )}\n`,
    );
  } else if (action === "create") {
    const chosen = (values.scope ?? ["inference"]) as Scope[];
    const unknown = chosen.filter((s) => !scopes.includes(s));
    if (unknown.length > 0)
      throw new CliError(`unknown scope ${unknown.join(", ")} (${scopes.join(", ")})`);
    const days = values["expires-days"] === undefined ? undefined : Number(values["expires-days"]);
    if (days !== undefined && !(days > 0))
      throw new CliError("--expires-days must be a positive number");
    const issued = await issueKey(client, await tenantId(client, values.tenant), {
      scopes: chosen,
      ...(values.name ? { name: values.name } : {}),
      ...(days ? { expires_at: Date.now() + days * 86_400_000 } : {}),
    });
    ctx.stderr.write(
      `Created ${issued.id} (${issued.scopes.join(", ")}). The key is shown only now:\n`,
    );
    ctx.stdout.write(`${issued.key}\n`);
  } else if (action === "revoke") {
    if (!id) throw new CliError("usage: lorafleet keys revoke <key id>");
    await revokeKey(client, id);
    ctx.stderr.write(`Revoked ${id}: it stops working within 70 s everywhere.\n`);
  } else {
    throw new CliError(keysHelp);
  }
}
