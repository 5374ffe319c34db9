/** What routing needs to know about a backend. */
export type RoutableBackend = {
  id: string;
  /** Requests it serves at once at full speed; also its weight. */
  capacity: number;
  /** Requests it holds now (last report + this isolate's in-flight ones). */
  load: number;
};

/** How far above its fair share of the total load a backend may go: (1 + epsilon). */
export const loadSlack = 0.25;

/**
 * Orders backends for a routing key (an adapter id, or the base model name):
 * weighted rendezvous hashing (highest random weight) gives each key a stable
 * preference order, so one adapter's requests meet on one backend and batch
 * together, and removing a backend only moves the keys that preferred it.
 * With bounded load (Mirrokni et al., "Consistent Hashing with Bounded Loads"),
 * a backend whose load is at or over (1 + epsilon) times its capacity-weighted
 * share goes after those that still have room; the rest of the order is the
 * failover order.
 *
 * @example rankBackends("ad_x", [{ id: "a", capacity: 8, load: 0 }, { id: "b", capacity: 8, load: 0 }])
 */
export function rankBackends<B extends RoutableBackend>(key: string, backends: readonly B[]): B[] {
  return boundLoad(preferenceOrder(key, backends), backends);
}

/**
 * The key's rendezvous order of `backends`, weighted by capacity, load not considered.
 *
 * @example preferenceOrder("ad_x", fleet)[0] // the backend ad_x prefers
 */
export function preferenceOrder<B extends RoutableBackend>(
  key: string,
  backends: readonly B[],
): B[] {
  return backends
    .map((backend) => ({ backend, score: weightedScore(key, backend) }))
    .sort((a, b) => b.score - a.score || (a.backend.id < b.backend.id ? -1 : 1))
    .map((s) => s.backend);
}

/**
 * `ordered` with the backends at or over their load bound moved behind those with room,
 * each part in its order. The bound is (1 + epsilon) times a backend's capacity-weighted
 * share of the load of all of `fleet` (the candidates `ordered` was drawn from), this
 * request included.
 */
export function boundLoad<B extends RoutableBackend>(ordered: B[], fleet: readonly B[]): B[] {
  const totalLoad = fleet.reduce((sum, b) => sum + b.load, 0);
  const totalCapacity = fleet.reduce((sum, b) => sum + b.capacity, 0);
  const withRoom = (b: B) =>
    b.load < Math.ceil(((1 + loadSlack) * (totalLoad + 1) * b.capacity) / totalCapacity);
  return [...ordered.filter(withRoom), ...ordered.filter((b) => !withRoom(b))];
}

/** -capacity / ln(u), u uniform in (0, 1) from the hash: the weighted HRW score. */
function weightedScore(key: string, backend: RoutableBackend): number {
  const u = (hash32(`${key}\u0000${backend.id}`) + 0.5) / 2 ** 32;
  return -backend.capacity / Math.log(u);
}

/** FNV-1a followed by murmur3's finaliser, for well-spread 32-bit hashes of short strings. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i += 1) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
