// The local disk cache of downloaded adapters: one directory per entry, least recently
// used evicted first once the entries' bytes pass the bound. Recency lives in each
// directory's mtime, so a restarted backend keeps its cache and its order.

import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { AdapterCacheFull } from "./errors.ts";

/** Temp dirs start with this; complete entries never do. */
const PARTIAL_PREFIX = ".partial-";
/** A temp dir this old belongs to a download that died with its process. */
const STALE_PARTIAL_MS = 60 * 60 * 1000;

interface Entry {
  path: string;
  bytes: number;
  lastUsed: number;
}

export interface DiskCacheOptions {
  dir: string;
  maxBytes: number;
  /** an entry used more recently than this is not evicted (the executor may be reading it) */
  protectMs: number;
}

export class DiskCache {
  readonly #options: DiskCacheOptions;
  readonly #entries = new Map<string, Entry>();
  #usedBytes = 0;

  private constructor(options: DiskCacheOptions) {
    this.#options = options;
  }

  /** Opens `dir` (created if missing), indexing complete entries and removing stale temp dirs. */
  static async open(options: DiskCacheOptions): Promise<DiskCache> {
    const cache = new DiskCache(options);
    await mkdir(options.dir, { recursive: true });
    for (const name of await readdir(options.dir)) {
      const path = join(options.dir, name);
      const info = await stat(path).catch(() => undefined);
      if (info === undefined || !info.isDirectory()) continue;
      if (name.startsWith(PARTIAL_PREFIX)) {
        if (Date.now() - info.mtimeMs > STALE_PARTIAL_MS)
          await rm(path, { recursive: true, force: true });
        continue;
      }
      cache.#remember(name, path, await directoryBytes(path), info.mtimeMs);
    }
    return cache;
  }

  get usedBytes(): number {
    return this.#usedBytes;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The entry's directory, marked as just used; undefined when not cached. */
  get(key: string): string | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    if (!existsSync(entry.path)) {
      // Removed behind our back (by hand, or another backend sharing the directory).
      this.#entries.delete(key);
      this.#usedBytes -= entry.bytes;
      return undefined;
    }
    entry.lastUsed = Date.now();
    const seconds = entry.lastUsed / 1000;
    void utimes(entry.path, seconds, seconds).catch(() => {});
    return entry.path;
  }

  /** A new temp dir inside the cache (same file system, so `commit` is a rename). */
  tempDir(): Promise<string> {
    return mkdtemp(join(this.#options.dir, PARTIAL_PREFIX));
  }

  /**
   * Makes room for `bytes` by evicting least recently used entries, then moves the
   * complete `tempDir` into place as `key`. Throws AdapterCacheFull when even that
   * cannot make room; the caller removes `tempDir` then.
   */
  async commit(key: string, tempDir: string, bytes: number): Promise<string> {
    // Reserved before the first await, so concurrent commits see each other's bytes
    // and never pick the same victims.
    const victims = this.#reserve(bytes);
    const path = join(this.#options.dir, key);
    try {
      await Promise.all(victims.map((v) => rm(v.path, { recursive: true, force: true })));
      await rm(path, { recursive: true, force: true }); // a leftover of a crashed process
      await rename(tempDir, path);
    } catch (error) {
      this.#usedBytes -= bytes;
      throw error;
    }
    const replaced = this.#entries.get(key);
    if (replaced !== undefined) this.#usedBytes -= replaced.bytes;
    this.#entries.set(key, { path, bytes, lastUsed: Date.now() }); // bytes counted by #reserve
    return path;
  }

  /** Takes the least recently used unprotected entries out until `bytes` more fit. */
  #reserve(bytes: number): Entry[] {
    const { maxBytes, protectMs } = this.#options;
    if (bytes > maxBytes) {
      throw new AdapterCacheFull(
        `an adapter of ${bytes} bytes is larger than the cache (${maxBytes})`,
      );
    }
    const now = Date.now();
    const candidates = [...this.#entries]
      .filter(([, e]) => now - e.lastUsed >= protectMs)
      .sort(([, a], [, b]) => a.lastUsed - b.lastUsed);
    const chosen: [string, Entry][] = [];
    let freed = 0;
    for (const candidate of candidates) {
      if (this.#usedBytes - freed + bytes <= maxBytes) break;
      chosen.push(candidate);
      freed += candidate[1].bytes;
    }
    if (this.#usedBytes - freed + bytes > maxBytes) {
      throw new AdapterCacheFull(
        `no room for ${bytes} bytes: the cache holds ${this.#usedBytes} of ${maxBytes} bytes in adapters used in the last ${protectMs} ms`,
      );
    }
    for (const [key] of chosen) this.#entries.delete(key);
    this.#usedBytes += bytes - freed;
    return chosen.map(([, entry]) => entry);
  }

  #remember(key: string, path: string, bytes: number, lastUsed: number): void {
    const old = this.#entries.get(key);
    if (old !== undefined) this.#usedBytes -= old.bytes;
    this.#entries.set(key, { path, bytes, lastUsed });
    this.#usedBytes += bytes;
  }
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir)) {
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (info?.isFile()) total += info.size;
  }
  return total;
}
