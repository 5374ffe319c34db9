import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { CliError } from "./cli-error.ts";

/** What `lorafleet login` stores: the gateway and the secrets to call it with. */
export type CliConfig = { url: string; apiKey?: string; adminToken?: string };

/**
 * The config file: `--config`, else $LORAFLEET_CONFIG, else
 * $XDG_CONFIG_HOME/lorafleet/config.json (default ~/.config).
 */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag) return flag;
  if (env.LORAFLEET_CONFIG) return env.LORAFLEET_CONFIG;
  return join(env.XDG_CONFIG_HOME || join(homedir(), ".config"), "lorafleet", "config.json");
}

export function readConfig(path: string): CliConfig | null {
  if (!existsSync(path)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new CliError(`${path} is not valid JSON; run \`lorafleet login\` again`);
  }
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    typeof (parsed as CliConfig).url !== "string"
  )
    throw new CliError(`${path} has no gateway url; run \`lorafleet login\` again`);
  return parsed as CliConfig;
}

/** Writes the config readable by its owner only (0600, folder 0700): it holds secrets. */
export function writeConfig(path: string, config: CliConfig): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // writeFileSync keeps the mode of a file that already existed.
  chmodSync(path, 0o600);
}
