// The adapter store: turns an adapter name, or the gateway's reference to an adapter,
// into a local PEFT directory the executor can read.
//
// - Local: `dir/<name>/` (adapter_config.json + adapter_model.safetensors).
// - Remote: the gateway gives two signed URLs and the sha256 of the weights. The
//   URLs must be on an origin of `urlPolicy` (the gateway's; checked before connecting),
//   and redirects are not followed. Each request carries `credential` (this backend's
//   --backend-secret): the gateway serves a URL only to the backend it was signed for. The
//   files go to a temp dir inside the disk cache and are renamed into place as
//   `<cacheDir>/<id>@<sha256>/` only once the weights hash right: nothing half-written
//   or unverified is ever served. Concurrent requests for one adapter share one
//   download; the cache evicts least recently used adapters past `cacheMaxBytes`.
//
//   const store = new AdapterStore({ dir: "/srv/adapters", urlPolicy: AdapterUrlPolicy.parse(gw) });
//   await store.find("tiny-r8");   // "/srv/adapters/tiny-r8" or null
//   await store.fetch({ id, name, sha256, configUrl, weightsUrl }); // cached dir

import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { Agent } from "undici";
import type { AdapterSource, RemoteAdapter } from "../serving/executor-link.ts";
import { DiskCache } from "./disk-cache.ts";
import { downloadFile } from "./download.ts";
import { AdapterChecksumMismatch, AdapterDownloadFailed, InvalidAdapterRef } from "./errors.ts";
import { AdapterUrlPolicy } from "./url-policy.ts";

export interface AdapterStoreOptions {
  /** local adapters, one subfolder per name; none when undefined */
  dir?: string;
  /** origins remote adapters may come from; default none (every URL refused) */
  urlPolicy?: AdapterUrlPolicy;
  /**
   * this backend's secret, sent as `authorization: Bearer` with each download: only to
   * `urlPolicy`'s origins (checked before connecting), never across a redirect (none followed)
   */
  credential?: string | undefined;
  /** downloads; default `<dir>/.remote` */
  cacheDir?: string;
  /** bound of the disk cache (LRU by bytes) */
  cacheMaxBytes?: number;
  /** per adapter weights file */
  maxAdapterBytes?: number;
  /** an adapter handed out this recently is not evicted: the executor may be reading it */
  protectMs?: number;
  connectTimeoutMs?: number;
  /** request sent -> response headers */
  headersTimeoutMs?: number;
  /** the longest pause between two chunks of a body */
  bodyTimeoutMs?: number;
  /** one whole file */
  totalTimeoutMs?: number;
}

const DEFAULTS = {
  cacheMaxBytes: 32 * 1024 ** 3,
  maxAdapterBytes: 8 * 1024 ** 3,
  protectMs: 60_000,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  bodyTimeoutMs: 30_000,
  totalTimeoutMs: 30 * 60_000,
};
const MAX_CONFIG_BYTES = 1024 * 1024;
/** Names and ids are single path segments: no separators, no dot files. */
const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const SHA256 = /^[0-9a-f]{64}$/;

export class AdapterStore implements AdapterSource {
  readonly #dir: string | undefined;
  readonly #options: typeof DEFAULTS;
  readonly #agent: Agent;
  readonly #urlPolicy: AdapterUrlPolicy;
  readonly #credential: string | undefined;
  readonly #cache: Promise<DiskCache>;
  readonly #inFlight = new Map<string, Promise<string>>();

  constructor(options: AdapterStoreOptions) {
    this.#dir = options.dir;
    const cacheDir =
      options.cacheDir ?? (options.dir === undefined ? undefined : join(options.dir, ".remote"));
    if (cacheDir === undefined) throw new Error("AdapterStore needs dir or cacheDir");
    this.#options = { ...DEFAULTS, ...definedOnly(options) };
    this.#urlPolicy = options.urlPolicy ?? new AdapterUrlPolicy([]);
    this.#credential = options.credential;
    this.#agent = new Agent({
      connect: { timeout: this.#options.connectTimeoutMs },
      headersTimeout: this.#options.headersTimeoutMs,
      bodyTimeout: this.#options.bodyTimeoutMs,
    });
    this.#cache = DiskCache.open({
      dir: cacheDir,
      maxBytes: this.#options.cacheMaxBytes,
      protectMs: this.#options.protectMs,
    });
    this.#cache.catch(() => {}); // reported by the first fetch that awaits it
  }

  /** A local adapter's directory, or null when `dir` has no such adapter. */
  async find(name: string): Promise<string | null> {
    if (this.#dir === undefined || !SAFE_NAME.test(name)) return null;
    const path = join(this.#dir, name);
    return existsSync(join(path, "adapter_config.json")) ? path : null;
  }

  /**
   * The gateway's adapter as a verified local directory: from the cache, or downloaded.
   * Rejects with AdapterUrlRefused, InvalidAdapterRef, AdapterDownloadFailed, AdapterTooLarge,
   * AdapterChecksumMismatch or AdapterCacheFull; nothing is cached then.
   */
  async fetch(adapter: RemoteAdapter): Promise<string> {
    this.#urlPolicy.check(adapter.configUrl);
    this.#urlPolicy.check(adapter.weightsUrl);
    const sha256 = adapter.sha256.toLowerCase();
    if (!SAFE_NAME.test(adapter.id)) {
      throw new InvalidAdapterRef(`adapter id ${JSON.stringify(adapter.id)} is not a safe name`);
    }
    if (!SHA256.test(sha256)) {
      throw new InvalidAdapterRef(`sha256 ${JSON.stringify(adapter.sha256)} is not 64 hex digits`);
    }
    const key = `${adapter.id}@${sha256}`;
    const cache = await this.#cache;
    const cached = cache.get(key);
    if (cached !== undefined) return cached;
    let download = this.#inFlight.get(key);
    if (download === undefined) {
      download = this.#download(cache, key, sha256, adapter).finally(() =>
        this.#inFlight.delete(key),
      );
      this.#inFlight.set(key, download);
    }
    return download;
  }

  /** Bytes and entries in the disk cache (for metrics). */
  async cacheStats(): Promise<{ bytes: number; adapters: number }> {
    const cache = await this.#cache;
    return { bytes: cache.usedBytes, adapters: cache.size };
  }

  /** Closes the HTTP connection pool, once the cache has finished opening. */
  async close(): Promise<void> {
    await this.#cache.catch(() => {});
    await this.#agent.close();
  }

  async #download(
    cache: DiskCache,
    key: string,
    sha256: string,
    adapter: RemoteAdapter,
  ): Promise<string> {
    const temp = await cache.tempDir();
    try {
      const limits = {
        dispatcher: this.#agent,
        credential: this.#credential,
        totalTimeoutMs: this.#options.totalTimeoutMs,
        maxBytes: MAX_CONFIG_BYTES,
      };
      const configPath = join(temp, "adapter_config.json");
      const config = await downloadFile(adapter.configUrl, configPath, limits);
      checkJson(await readFile(configPath, "utf8"), adapter.name);
      const weights = await downloadFile(
        adapter.weightsUrl,
        join(temp, "adapter_model.safetensors"),
        {
          ...limits,
          maxBytes: this.#options.maxAdapterBytes,
        },
      );
      if (weights.sha256 !== sha256) {
        throw new AdapterChecksumMismatch(
          `adapter ${adapter.name}: adapter_model.safetensors has sha256 ${weights.sha256}, the gateway recorded ${sha256}`,
        );
      }
      return await cache.commit(key, temp, config.bytes + weights.bytes);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      throw error;
    }
  }
}

function checkJson(text: string, name: string): void {
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) return;
  } catch {
    // named below
  }
  throw new AdapterDownloadFailed(`adapter ${name}: adapter_config.json is not a JSON object`);
}

function definedOnly(options: AdapterStoreOptions): Partial<typeof DEFAULTS> {
  return Object.fromEntries(
    Object.entries(options).filter(([k, v]) => v !== undefined && k in DEFAULTS),
  ) as Partial<typeof DEFAULTS>;
}
