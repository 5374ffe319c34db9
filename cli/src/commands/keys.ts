import { parseArgs } from "node:util";
import {
  type ApiKey,
  type GatewayClient,
  type IssuedKey,
  issueKey,
  issueOwnKey,
  listKeys,
  listOwnKeys,
  listTenants,
  revokeKey,
  revokeOwnKey,
  type Scope,
} from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import {
  adminClient,
  type CliContext,
  configOption,
  loadConfig,
  tenantClient,
} from "../context.ts";
import { table } from "../table.ts";

export const keysHelp = `lorafleet keys list [--tenant <name|id>]
lorafleet keys create [--tenant <name|id>] [--scope inference]... [--name <n>] [--expires-days <d>]
lorafleet keys revoke <key id> [--tenant <name|id>]
  Without --tenant: the signed-in tenant's own keys (its key needs the admin scope).
  With --tenant: the operator's view of that tenant (lorafleet login --admin).`;

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
  const config = loadConfig(ctx, values.config);
  // --tenant picks the operator's /admin routes; without it, the tenant's own /v1/keys.
  const operator = values.tenant !== undefined;
  const client = operator ? adminClient(config) : tenantClient(config);
  const [action, id] = positionals;
  if (action === "list") {
    const list: ApiKey[] = operator
      ? await listKeys(client, await tenantId(client, values.tenant))
      : await listOwnKeys(client);
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
    const input = {
      scopes: chosen,
      ...(values.name ? { name: values.name } : {}),
      ...(days ? { expires_at: Date.now() + days * 86_400_000 } : {}),
    };
    const issued: IssuedKey = operator
      ? await issueKey(client, await tenantId(client, values.tenant), input)
      : await issueOwnKey(client, input);
    ctx.stderr.write(
      `Created ${issued.id} (${issued.scopes.join(", ")}). The key is shown only now:\n`,
    );
    ctx.stdout.write(`${issued.key}\n`);
  } else if (action === "revoke") {
    if (!id) throw new CliError("usage: lorafleet keys revoke <key id> [--tenant <name|id>]");
    await (operator ? revokeKey(client, id) : revokeOwnKey(client, id));
    ctx.stderr.write(`Revoked ${id}: it stops working within 70 s everywhere.\n`);
  } else {
    throw new CliError(keysHelp);
  }
}
