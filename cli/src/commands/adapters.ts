import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import {
  type Adapter,
  deleteAdapter,
  type GatewayClient,
  listAdapters,
} from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import { type CliContext, configOption, loadConfig, tenantClient } from "../context.ts";
import { multipartBody } from "../multipart-upload.ts";
import { ProgressBar } from "../progress-bar.ts";
import { table } from "../table.ts";

export const adaptersHelp = `lorafleet adapters list
lorafleet adapters upload <dir with adapter_config.json + adapter_model.safetensors> --name <name>
lorafleet adapters delete <name>`;

const adapterFiles = ["adapter_config.json", "adapter_model.safetensors"];

async function upload(ctx: CliContext, client: GatewayClient, dir: string, name: string) {
  if (!existsSync(dir) || !statSync(dir).isDirectory())
    throw new CliError(`${dir} is not a folder`);
  const missing = adapterFiles.filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) throw new CliError(`${dir} lacks ${missing.join(" and ")}`);
  const form = multipartBody([
    { name: "name", value: name },
    ...adapterFiles.map((f) => ({
      name: "files",
      filename: basename(f),
      bytes: readFileSync(join(dir, f)),
    })),
  ]);
  const bar = new ProgressBar(ctx.stderr, `upload ${name}`, form.total);
  const response = await client.send("POST", "/v1/adapters", {
    body: form.stream((sent) => bar.update(sent)),
    // The size is known up front: the gateway refuses an oversize upload from the header
    // alone, before a byte of it is read.
    headers: { "content-type": form.contentType, "content-length": String(form.total) },
    // Node's fetch sends a stream body only half-duplex.
    duplex: "half",
  } as RequestInit);
  bar.done();
  const adapter = (await response.json()) as Adapter;
  ctx.stdout.write(`${adapter.name}\t${adapter.status}\trank ${adapter.rank}\t${adapter.sha256}\n`);
}

export async function adapters(ctx: CliContext, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...configOption, name: { type: "string" } },
  });
  const client = tenantClient(loadConfig(ctx, values.config));
  const [action, target] = positionals;
  if (action === "list") {
    const list = await listAdapters(client);
    if (list.length === 0) {
      ctx.stderr.write("No adapters yet: lorafleet adapters upload <dir> --name <name>\n");
      return;
    }
    ctx.stdout.write(
      `${table(
        ["NAME", "BASE MODEL", "RANK", "TARGETS", "BYTES", "STATUS"],
        list.map((a) => [
          a.name,
          a.base_model,
          a.rank,
          a.target_modules.join(","),
          a.bytes,
          a.status,
        ]),
      )}\n`,
    );
  } else if (action === "upload") {
    if (!target || !values.name)
      throw new CliError("usage: lorafleet adapters upload <dir> --name <name>");
    await upload(ctx, client, target, values.name);
  } else if (action === "delete") {
    if (!target) throw new CliError("usage: lorafleet adapters delete <name>");
    await deleteAdapter(client, target);
    ctx.stderr.write(`Deleted ${target}\n`);
  } else {
    throw new CliError(adaptersHelp);
  }
}
