import type { Env } from "../env.ts";
import { LruCache } from "../lru.ts";
import { retryD1 } from "../storage/d1-retry.ts";
import { type Background, RefreshedCache } from "../storage/refreshed-cache.ts";
import type { RoutableBackend } from "./rendezvous.ts";

export type Backend = RoutableBackend & {
  url: string;
  baseModel: string;
  /** Version of the backend's secret (auth/backend-credential.ts) */
  secretVersion: number;
};

type BackendRow = {
  id: string;
  url: string;
  base_model: string;
  capacity: number;
  load: number;
  secret_version: number;
};

/** How old an isolate's backend list may be before it is read again from D1 (in the background). */
export const backendListTtlMs = 5_000;
/** How long an isolate avoids a backend after a failed call to it. */
export const failedBackendPauseMs = 30_000;

/**
 * The isolate's view of the backends that can take requests for a base model:
 * active (not draining) and healthy in D1, not recently failed here, with the
 * load they last reported plus this isolate's in-flight requests to them. The list is
 * isolate state, refreshed from D1 in the background once older than `backendListTtlMs`
 * (the cron's health check marks it old), so a request reads D1 only in an isolate that
 * has never loaded it.
 */
export class BackendDirectory {
  readonly #lists: RefreshedCache<BackendRow[]>;
  readonly #failed: LruCache<true>;
  readonly #inFlight = new Map<string, number>();

  constructor(now: () => number = Date.now) {
    this.#lists = new RefreshedCache(backendListTtlMs, now);
    this.#failed = new LruCache(1000, failedBackendPauseMs, now);
  }

  /** `background` (`ctx.waitUntil`) lets an old list be served while it is refreshed. */
  async candidates(env: Env, baseModel: string, background?: Background): Promise<Backend[]> {
    const rows = await this.#lists.get(
      baseModel,
      async () => {
        const { results } = await retryD1(() =>
          env.DB.prepare(
            `SELECT b.id, b.url, b.base_model, b.capacity, b.load, c.version AS secret_version
             FROM backends b JOIN backend_credentials c ON c.backend_id = b.id
             WHERE b.base_model = ? AND b.status = 'active' AND b.healthy = 1`,
          )
            .bind(baseModel)
            .all<BackendRow>(),
        );
        return results;
      },
      background,
    );
    return rows
      .filter((r) => this.#failed.get(r.id) === undefined)
      .map((r) => ({
        id: r.id,
        url: r.url,
        baseModel: r.base_model,
        capacity: r.capacity,
        secretVersion: r.secret_version,
        load: r.load + (this.#inFlight.get(r.id) ?? 0),
      }));
  }

  /** Marks a backend failed in this isolate; the next health check updates D1. */
  markFailed(id: string): void {
    this.#failed.set(id, true);
  }

  begin(id: string): void {
    this.#inFlight.set(id, (this.#inFlight.get(id) ?? 0) + 1);
  }

  end(id: string): void {
    const left = (this.#inFlight.get(id) ?? 1) - 1;
    if (left <= 0) this.#inFlight.delete(id);
    else this.#inFlight.set(id, left);
  }

  /** After an admin change: the next request reads the lists again. */
  invalidate(): void {
    this.#lists.clear();
    this.#failed.clear();
  }

  /** After a health check wrote D1: the lists are refreshed behind the next requests. */
  markStale(): void {
    this.#lists.markStale();
    this.#failed.clear();
  }
}
