/**
 * One clock of uses for everything the pool's eviction policy weighs (eviction.ts): each use
 * of an adapter and each release of a cached KV block ticks it, so the ages of both kinds
 * count in the same unit.
 */
export class UseClock {
  #now = 0;

  get now(): number {
    return this.#now;
  }

  tick(): number {
    return ++this.#now;
  }
}
