import { parseArgs } from "node:util";
import { type ChatRequest, listModels, streamChat } from "@lorafleet/console/api";
import { CliError } from "../cli-error.ts";
import { type CliContext, configOption, loadConfig, tenantClient } from "../context.ts";

export const chatHelp = `lorafleet chat [--model <base model or adapter>] [--system <text>]
               [--max-tokens N] [--temperature T] [--top-p P] [--seed S] <message...>
  Streams the answer to stdout (the message is read from stdin when not given);
  without --model, the first base model.`;

function number(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new CliError(`--${name} must be a number`);
  return value;
}

async function readAll(stream: NodeJS.ReadStream): Promise<string> {
  let text = "";
  for await (const chunk of stream) text += chunk;
  return text;
}

export async function chat(ctx: CliContext, args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...configOption,
      model: { type: "string" },
      system: { type: "string" },
      "max-tokens": { type: "string" },
      temperature: { type: "string" },
      "top-p": { type: "string" },
      seed: { type: "string" },
    },
  });
  const client = tenantClient(loadConfig(ctx, values.config));
  const message =
    positionals.length > 0 ? positionals.join(" ") : (await readAll(ctx.stdin)).trim();
  if (!message) throw new CliError(`no message given\n${chatHelp}`);
  const model =
    values.model ?? (await listModels(client)).find((m) => m.parent === null)?.id ?? undefined;
  if (!model) throw new CliError("no base model is available to this key; pass --model");

  const request: ChatRequest = {
    model,
    messages: [
      ...(values.system ? [{ role: "system" as const, content: values.system }] : []),
      { role: "user", content: message },
    ],
  };
  const params = {
    max_tokens: number("max-tokens", values["max-tokens"]),
    temperature: number("temperature", values.temperature),
    top_p: number("top-p", values["top-p"]),
    seed: number("seed", values.seed),
  };
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined) Object.assign(request, { [name]: value });
  }
  for await (const delta of streamChat(client, request)) {
    if (delta.kind === "text") ctx.stdout.write(delta.text);
    else if (delta.kind === "end") {
      ctx.stdout.write("\n");
      if (delta.usage) {
        ctx.stderr.write(
          `[${model}: ${delta.usage.prompt_tokens} prompt + ${delta.usage.completion_tokens} completion tokens, finish ${delta.finishReason ?? "?"}]\n`,
        );
      }
    }
  }
}
