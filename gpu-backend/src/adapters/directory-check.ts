// A local PEFT directory against the shared adapter rules (@lorafleet/api's, which the
// gateway's upload and the executor's staging apply too): what registration runs, so an
// adapter is refused when it is named (`/v1/load_lora_adapter`, first use of a name the
// store finds, a download from the gateway) with the message a completion would get, and
// never first at a completion. The weights are read once, streamed past the value check.
//
//   await checkAdapterDirectory("/srv/adapters/tiny-r8", base); // throws AdapterRuleError

import { createReadStream, existsSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  type AdapterBase,
  type AdapterConfig,
  checkAdapterConfig,
  checkLoraTensors,
  MAX_CONFIG_BYTES,
  MAX_HEADER_BYTES,
  missingConfig,
  missingWeights,
  parseSafetensorsHeader,
  safetensorsHeaderEnd,
  WeightValues,
} from "@lorafleet/api";
import type { ModelInfo } from "../protocol/messages.ts";

/** What an adapter must fit on this backend: the executor's model, `--max-lora-rank`. */
export function adapterBaseOf(model: ModelInfo, maxRank: number): AdapterBase {
  // `ready` names the seven projections exactly (protocol/schema.ts checks it).
  return { numLayers: model.numLayers, modules: model.modules as AdapterBase["modules"], maxRank };
}

/** Checks the directory's two files; resolves with the config, throws AdapterRuleError. */
export async function checkAdapterDirectory(
  dir: string,
  base: AdapterBase,
): Promise<AdapterConfig> {
  const configPath = join(dir, "adapter_config.json");
  // Only regular files are read: a FIFO or a device would hang or never end.
  if (!(await isFile(configPath))) throw missingConfig();
  const config = checkAdapterConfig(
    await readStart(configPath, MAX_CONFIG_BYTES + 1),
    base.maxRank,
  );
  const weightsPath = join(dir, "adapter_model.safetensors");
  if (!(await isFile(weightsPath)))
    throw missingWeights(existsSync(join(dir, "adapter_model.bin")));
  const { size } = await stat(weightsPath);
  const headerEnd = safetensorsHeaderEnd(await readStart(weightsPath, 8), size);
  const head = await readStart(weightsPath, Math.min(headerEnd, 8 + MAX_HEADER_BYTES));
  const tensors = checkLoraTensors(parseSafetensorsHeader(head, size), config, base);
  const values = new WeightValues(tensors, config);
  for await (const chunk of createReadStream(weightsPath, { start: headerEnd })) {
    values.add(chunk as Buffer);
  }
  values.check();
  return config;
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => null))?.isFile() ?? false;
}

/** The first `length` bytes of a file (fewer if it is shorter). */
async function readStart(path: string, length: number): Promise<Uint8Array> {
  const file = await open(path, "r");
  try {
    const buffer = new Uint8Array(length);
    const { bytesRead } = await file.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}
