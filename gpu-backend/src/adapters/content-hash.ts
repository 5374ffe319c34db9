// The sha256 of a local adapter's content, what the engine keys its prefix cache on
// besides the adapter's name (AdapterRef.sha256): KV computed with old weights never meets
// a request for new ones under the same name.
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { join } from "node:path";

/** The files whose bytes decide an adapter's outputs: its scale and rank, and its weights. */
const CONTENT_FILES = ["adapter_config.json", "adapter_model.safetensors"];

/**
 * sha256 over each file present (its name, then its bytes), read as a stream.
 * @example await adapterContentSha256("/srv/adapters/tiny-r8") // "9f86d0…"
 */
export async function adapterContentSha256(dir: string): Promise<string> {
  const hash = createHash("sha256");
  for (const name of CONTENT_FILES) {
    const path = join(dir, name);
    if (!existsSync(path)) continue;
    hash.update(`${name}\0`);
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}
