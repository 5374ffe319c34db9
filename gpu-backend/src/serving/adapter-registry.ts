// Which adapter names this backend can serve and where their PEFT directories are:
// names registered through /v1/load_lora_adapter, names the adapter store knows
// (loaded on first use), and the gateway's content-addressed adapters. Each directory is
// checked by the shared adapter rules (`check`: src/adapters/directory-check.ts) before
// its name is known, so a bad adapter is refused when it is named, with the message a
// completion would get, never first at a completion.

import { AdapterRuleError } from "@lorafleet/api";
import { AdapterDownloadFailed, AdapterUrlRefused } from "../adapters/errors.ts";
import type { AdapterRef } from "../engine/index.ts";
import {
  AdapterLoadError,
  AdapterStoreUnavailableError,
  AdapterUrlNotAllowedError,
  UnknownModelError,
} from "./errors.ts";
import type { AdapterSource, RemoteAdapter } from "./executor-link.ts";

export class AdapterRegistry {
  /** names clients may put in `model` */
  readonly #paths = new Map<string, string>();
  /** the gateway's adapters by `id@sha256`: not listed, not callable by name */
  readonly #remote = new Map<string, string>();
  readonly #source: AdapterSource;
  readonly #check: (dir: string) => Promise<unknown>;

  /** `check` throws AdapterRuleError for a directory the adapter rules refuse. */
  constructor(source: AdapterSource, check: (dir: string) => Promise<unknown>) {
    this.#source = source;
    this.#check = check;
  }

  /** Registers `name` once its directory passes the rules; throws AdapterLoadError. */
  async register(name: string, path: string): Promise<void> {
    await this.#checked(name, path);
    this.#paths.set(name, path);
  }

  /** Forgets the name; returns false when it was not registered. */
  unregister(name: string): boolean {
    return this.#paths.delete(name);
  }

  names(): string[] {
    return [...this.#paths.keys()];
  }

  /**
   * The adapter `name` names: a registered one, else one the store knows (registered on
   * first use). Throws UnknownModelError when neither has it.
   */
  async resolve(name: string): Promise<AdapterRef> {
    const known = this.#paths.get(name);
    if (known !== undefined) return { name, path: known };
    const found = await this.#source.find(name);
    if (found === null) throw new UnknownModelError(`The model \`${name}\` does not exist.`);
    await this.#checked(name, found);
    this.#paths.set(name, found);
    return { name, path: found };
  }

  /**
   * A gateway adapter, keyed by its sha256 so that re-uploading different weights under
   * the same name never serves the old ones from the engine's cache.
   */
  async resolveRemote(adapter: RemoteAdapter): Promise<AdapterRef> {
    const key = `${adapter.id}@${adapter.sha256.slice(0, 16)}`;
    const known = this.#remote.get(key);
    if (known !== undefined) return { name: key, path: known };
    let path: string;
    try {
      path = await this.#source.fetch(adapter);
    } catch (error) {
      const message = `adapter ${adapter.name}: ${(error as Error).message}`;
      if (error instanceof AdapterUrlRefused) throw new AdapterUrlNotAllowedError(message);
      if (isTransient(error)) throw new AdapterStoreUnavailableError(message);
      throw new AdapterLoadError(message);
    }
    await this.#checked(adapter.name, path);
    this.#remote.set(key, path);
    return { name: key, path };
  }

  /** The rules' verdict on `dir`, as the AdapterLoadError (400 adapter_invalid) it is. */
  async #checked(name: string, dir: string): Promise<void> {
    try {
      await this.#check(dir);
    } catch (error) {
      if (!(error instanceof AdapterRuleError)) throw error;
      throw new AdapterLoadError(`adapter ${name}: ${error.message}`);
    }
  }
}

/** No answer, a cut body, a timeout or a 5xx / 408 / 429: the store may answer later. */
function isTransient(error: unknown): boolean {
  if (!(error instanceof AdapterDownloadFailed)) return false;
  const status = error.status;
  return status === undefined || status >= 500 || status === 408 || status === 429;
}
