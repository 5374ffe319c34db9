/** Runs work after the response, as `ctx.waitUntil` does. */
export type Background = (work: Promise<unknown>) => void;

/**
 * Per-isolate values kept from their source (D1) and refreshed in the background: a value
 * older than `ttlMs` is still served, and one refresh per key runs behind the request that
 * found it old, handed to `background` (`ctx.waitUntil`). Only a key never loaded (or
 * cleared) is loaded while the request waits; so is an old one when no `background` is given.
 *
 * @example const rows = await cache.get(model, () => loadRows(env, model), (w) => ctx.waitUntil(w));
 */
export class RefreshedCache<V> {
  readonly #entries = new Map<string, { value: V; loadedAt: number }>();
  readonly #loading = new Map<string, Promise<V>>();
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  async get(key: string, load: () => Promise<V>, background?: Background): Promise<V> {
    const entry = this.#entries.get(key);
    if (entry === undefined) return this.#load(key, load);
    if (this.#now() - entry.loadedAt < this.#ttlMs) return entry.value;
    if (background === undefined) return this.#load(key, load);
    if (!this.#loading.has(key)) {
      background(
        this.#load(key, load).catch((error: unknown) =>
          console.warn(
            JSON.stringify({ level: "warn", event: "refresh_failed", message: String(error) }),
          ),
        ),
      );
    }
    return entry.value;
  }

  /** Keeps the values but has the next `get` of each refresh it (in the background when it can). */
  markStale(): void {
    for (const entry of this.#entries.values()) entry.loadedAt = -Infinity;
  }

  /** Forgets every value: the next `get` of each waits for a load. */
  clear(): void {
    this.#entries.clear();
  }

  #load(key: string, load: () => Promise<V>): Promise<V> {
    const running = this.#loading.get(key);
    if (running !== undefined) return running;
    const loading = load()
      .then((value) => {
        this.#entries.set(key, { value, loadedAt: this.#now() });
        return value;
      })
      .finally(() => this.#loading.delete(key));
    this.#loading.set(key, loading);
    return loading;
  }
}
