// Which adapter names this backend can serve and where their PEFT directories are:
// names registered through /v1/load_lora_adapter, names the adapter store knows
// (loaded on first use), and the gateway's content-addressed adapters. Each directory is
// checked by the shared adapter rules (`check`: src/adapters/directory-check.ts) before
// its name is known, so a bad adapter is refused when it is named, with the message a
// completion would get, never first at a completion. Each comes with the sha256 of its
// content, part of the prefix cache's key.

import { AdapterRuleError } from "@lorafleet/api";
import { adapterContentSha256 } from "../adapters/content-hash.ts";
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
  /** their content's sha256, from the first use after they were (re-)registered */
  readonly #shas = new Map<string, Promise<string>>();
  /** the gateway's adapters by `id@sha256`: not listed, not callable by name */
  readonly #remote = new Map<string, AdapterRef>();
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
    this.#shas.delete(name);
  }

  /** Forgets the name; returns false when it was not registered. */
  unregister(name: string): boolean {
    this.#shas.delete(name);
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
    let path = this.#paths.get(name);
    if (path === undefined) {
      const found = await this.#source.find(name);
      if (found === null) throw new UnknownModelError(`The model \`${name}\` does not exist.`);
      await this.register(name, found);
      path = found;
    }
    // Hashed once per registration: change a registered adapter's files by unloading and
    // loading it again (the engine keeps what it staged under the name until then).
    let sha256 = this.#shas.get(name);
    if (sha256 === undefined) {
      sha256 = adapterContentSha256(path);
      this.#shas.set(name, sha256);
      sha256.catch(() => this.#shas.delete(name));
    }
    return { name, path, sha256: await sha256 };
  }

  /**
   * A gateway adapter, keyed by its sha256 so that re-uploading different weights under
   * the same name never serves the old ones from the engine's cache.
   */
  async resolveRemote(adapter: RemoteAdapter): Promise<AdapterRef> {
    const key = `${adapter.id}@${adapter.sha256.slice(0, 16)}`;
    const known = this.#remote.get(key);
    if (known !== undefined) return known;
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
    const ref = { name: key, path, sha256: adapter.sha256 };
    this.#remote.set(key, ref);
    return ref;
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
