import type { CliContext } from "./context.ts";

/**
 * A secret from the environment, else from stdin: the first line of a pipe, or
 * typed at a terminal without echo. Never from argv, which other users can see.
 */
export async function readSecret(
  ctx: CliContext,
  envName: string,
  prompt: string,
): Promise<string> {
  const fromEnv = ctx.env[envName];
  if (fromEnv) return fromEnv.trim();
  if (!ctx.stdin.isTTY) {
    let text = "";
    for await (const chunk of ctx.stdin) {
      text += chunk;
      if (text.includes("\n")) break;
    }
    return (text.split("\n")[0] ?? "").trim();
  }
  ctx.stderr.write(prompt);
  ctx.stdin.setRawMode(true);
  ctx.stdin.setEncoding("utf8");
  try {
    let typed = "";
    for await (const chunk of ctx.stdin) {
      for (const ch of String(chunk)) {
        if (ch === "\r" || ch === "\n") return typed.trim();
        if (ch === "\u0003") throw new Error("cancelled");
        typed = ch === "\u007f" ? typed.slice(0, -1) : typed + ch;
      }
    }
    return typed.trim();
  } finally {
    ctx.stdin.setRawMode(false);
    ctx.stdin.pause();
    ctx.stderr.write("\n");
  }
}
