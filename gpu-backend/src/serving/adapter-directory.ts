// Until src/adapters/store.ts lands, the serving loop's AdapterSource: adapter names are
// PEFT directories under one local directory, and the gateway's adapters are
// downloaded from their signed URLs into `<dir>/.remote/<id>@<sha256>/`, the weights
// checked against the sha256 the gateway recorded, and moved into place only when whole.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AdapterSource, RemoteAdapter } from "./executor-link.ts";

/** Adapter names are path segments: no separators, no dot files. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const MAX_ADAPTER_BYTES = 2 * 1024 ** 3;

export class AdapterDirectory implements AdapterSource {
  readonly #dir: string;

  /** @example new AdapterDirectory(".cache/fixtures/adapters").find("tiny-r8") */
  constructor(dir: string) {
    this.#dir = dir;
  }

  async find(name: string): Promise<string | null> {
    if (!SAFE_NAME.test(name)) return null;
    const path = join(this.#dir, name);
    return existsSync(join(path, "adapter_config.json")) ? path : null;
  }

  async fetch(adapter: RemoteAdapter): Promise<string> {
    const key = `${adapter.id}@${adapter.sha256}`;
    if (!SAFE_NAME.test(adapter.id))
      throw new Error(`adapter id ${JSON.stringify(adapter.id)} is not a safe name`);
    const path = join(this.#dir, ".remote", key);
    if (existsSync(join(path, "adapter_model.safetensors"))) return path;
    const partial = `${path}.partial-${process.pid}-${Date.now()}`;
    await mkdir(partial, { recursive: true });
    try {
      const weights = await download(adapter.weightsUrl);
      const digest = createHash("sha256").update(weights).digest("hex");
      if (digest !== adapter.sha256) {
        throw new Error(
          `adapter_model.safetensors has sha256 ${digest}, the gateway recorded ${adapter.sha256}`,
        );
      }
      await writeFile(join(partial, "adapter_model.safetensors"), weights);
      await writeFile(join(partial, "adapter_config.json"), await download(adapter.configUrl));
      await rename(partial, path).catch(async (error: NodeJS.ErrnoException) => {
        // Another request fetched the same adapter first: keep theirs.
        if (!existsSync(path)) throw error;
      });
      return path;
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }
}

async function download(url: string): Promise<Uint8Array> {
  const response = await fetch(url, { signal: AbortSignal.timeout(300_000) });
  if (!response.ok)
    throw new Error(`GET ${new URL(url).pathname} answered HTTP ${response.status}`);
  const length = Number(response.headers.get("content-length") ?? 0);
  if (length > MAX_ADAPTER_BYTES)
    throw new Error(`adapter file of ${length} bytes is over the limit`);
  return new Uint8Array(await response.arrayBuffer());
}
