import type { StagedAdapter } from "../protocol/messages.ts";
import type { PageAllocator } from "./allocator.ts";
import { AdapterInUseError, UnknownAdapterError } from "./errors.ts";
import type { AdapterRef } from "./request.ts";
import { UseClock } from "./use-clock.ts";

/** What the executor client carries out for the engine, in order, before the step plan. */
export type AdapterOp =
  | { kind: "stage"; adapterId: number; name: string; path: string }
  | { kind: "load"; adapterId: number; pages: Int32Array }
  | { kind: "drop"; adapterId: number; tier: "pool" | "host" };

/**
 * unknown: not in the executor. staging: stage op sent. staged: in the host tier.
 * loading: load op sent, pages held. resident: in the pool, usable by steps.
 */
export type AdapterState = "unknown" | "staging" | "staged" | "loading" | "resident";

export interface AdapterStats {
  resident: number;
  loading: number;
  staged: number;
  staging: number;
  hostBytes: number;
  /** pins held by admitted requests, over all adapters (0 when idle: none leaked) */
  pins: number;
  loads: number;
  evictions: number;
  hostDrops: number;
  /** requests whose adapter was resident when they arrived */
  hits: number;
  misses: number;
}

interface AdapterEntry {
  readonly id: number;
  readonly name: string;
  path: string;
  state: AdapterState;
  staged: StagedAdapter | null;
  /** unfinished requests that name it */
  refs: number;
  /** admitted requests that need it: never evicted while > 0 */
  pins: number;
  /** the last step sent that reads its pages: never evicted before that step completes */
  lastStep: number;
  /** LRU clock value of its last use */
  lastUse: number;
  /** position among adapters queued requests need soonest; Infinity = not needed soon */
  wantRank: number;
  /** takes no new requests until it is idle and evicted for a more wanted adapter (`prefetch`) */
  draining: boolean;
  /** staged or loaded since the last admission pass (`admissionPassed`) */
  fresh: boolean;
}

/** The executor's host tier, as its `ready` describes it. */
export interface HostTier {
  capacityBytes: number;
  /** the most one adapter can take: what a stage reserves until its size is known */
  maxAdapterBytes: number;
}

/**
 * The pool's one eviction policy (eviction.ts) as adapter loads use it: cached KV blocks
 * beside idle adapters.
 */
export interface PoolRoom {
  /**
   * Evicts what the policy picks among idle adapters ranked at or after `minRank` that give
   * way to another adapter and settled cached KV blocks; false when there is none.
   */
  evictForAdapter(minRank: number): boolean;
  /** Pages cached KV blocks could give back: settled (a load may take them) and in all. */
  reclaimableKv(): { settled: number; all: number };
}

/**
 * The outcome of trying to get an adapter into the pool now. pending: its stage or load is
 * in flight, or the room it needs comes with stages in flight. blocked: no room until
 * requests finish.
 */
export type Readiness = "resident" | "pending" | "blocked";

/**
 * The adapter tiers (S-LoRA): host memory (the executor's host cache) and the GPU pool, with
 * LRU eviction of idle adapters in both. Never evicts an adapter pinned by an admitted
 * request or read by a step in flight. Queued requests' adapters are ranked (`setWanted`):
 * bringing in adapter rank r may evict only idle adapters ranked after r.
 *
 * Example:
 *   const adapters = new AdapterManager(config, pages);
 *   adapters.ref({ name: "a", path: "/lora/a" });
 *   adapters.ensure("a", 0, 0); // "pending": a stage op is queued
 *   adapters.takeOps();      // [{ kind: "stage", adapterId: 0, name: "a", path: "/lora/a" }]
 */
export class AdapterManager {
  readonly #limits: { maxLoras: number; maxCpuLoras: number };
  #hostTier: HostTier;
  readonly #pages: PageAllocator;
  readonly #byName = new Map<string, AdapterEntry>();
  readonly #byId = new Map<number, AdapterEntry>();
  #nextId = 0;
  /** shared with the prefix cache, so the eviction policy compares ages of both kinds */
  readonly #clock: UseClock;
  readonly #pool: PoolRoom | null;
  #completedStep = -1;
  #ops: AdapterOp[] = [];
  /** the blocked adapter that pinned ones are being drained for (`#drainFor`) */
  #drainBeneficiary: AdapterEntry | null = null;
  /** a request could be admitted now: adapters queued requests want may make room (`#givesWay`) */
  #seatsFree = true;
  readonly #counts = { loads: 0, evictions: 0, hostDrops: 0, hits: 0, misses: 0 };

  /** `shared`: the use clock and the pool's eviction policy (the engine's); alone, adapters only. */
  constructor(
    limits: { maxLoras: number; maxCpuLoras: number },
    hostTier: HostTier,
    pages: PageAllocator,
    shared: { clock: UseClock; pool: PoolRoom } | null = null,
  ) {
    this.#limits = limits;
    this.#hostTier = hostTier;
    this.#pages = pages;
    this.#clock = shared?.clock ?? new UseClock();
    this.#pool = shared?.pool ?? null;
  }

  /** A request naming the adapter arrived; counts a hit when it is resident. */
  ref(ref: AdapterRef): void {
    let entry = this.#byName.get(ref.name);
    if (entry === undefined) {
      entry = {
        id: this.#nextId++,
        name: ref.name,
        path: ref.path,
        state: "unknown",
        staged: null,
        refs: 0,
        pins: 0,
        lastStep: -1,
        lastUse: 0,
        wantRank: Number.POSITIVE_INFINITY,
        draining: false,
        fresh: false,
      };
      this.#byName.set(ref.name, entry);
      this.#byId.set(entry.id, entry);
    }
    if (entry.state === "unknown") entry.path = ref.path;
    entry.refs++;
    if (entry.state === "resident") this.#counts.hits++;
    else this.#counts.misses++;
  }

  /** A request naming the adapter finished. */
  unref(name: string): void {
    const entry = this.#entry(name);
    entry.refs--;
    this.#forgetIfUnused(entry);
  }

  pin(name: string): void {
    const entry = this.#entry(name);
    entry.pins++;
    entry.lastUse = this.#clock.tick();
  }

  unpin(name: string): void {
    this.#entry(name).pins--;
  }

  idOf(name: string): number {
    return this.#entry(name).id;
  }

  nameOf(adapterId: number): string | null {
    return this.#byId.get(adapterId)?.name ?? null;
  }

  /** Pool pages the adapter takes, once a stage has told (else null). */
  stagedPages(name: string): number | null {
    return this.#byName.get(name)?.staged?.numPages ?? null;
  }

  isResident(name: string): boolean {
    return this.#entry(name).state === "resident";
  }

  /** Whether a request naming it may be admitted now: resident and not being drained. */
  isStartable(name: string): boolean {
    const entry = this.#entry(name);
    return entry.state === "resident" && !entry.draining;
  }

  /** A step that reads the adapter was sent. */
  usedInStep(name: string, stepId: number): void {
    const entry = this.#entry(name);
    entry.lastStep = stepId;
    entry.lastUse = this.#clock.tick();
  }

  /** Every step up to `stepId` has completed. */
  stepCompleted(stepId: number): void {
    this.#completedStep = stepId;
  }

  /** The scheduler offered every startable request a seat: nothing is fresh any more. */
  admissionPassed(): void {
    for (const entry of this.#byName.values()) entry.fresh = false;
  }

  /** Ranks adapters by how soon queued requests need them (first = soonest). */
  setWanted(names: readonly string[]): void {
    for (const entry of this.#byName.values()) entry.wantRank = Number.POSITIVE_INFINITY;
    for (const [rank, name] of names.entries()) {
      const entry = this.#entry(name);
      if (entry.wantRank === Number.POSITIVE_INFINITY) entry.wantRank = rank;
    }
  }

  /**
   * Moves the adapter one tier closer to the pool if there is room (making room only from
   * idle adapters ranked after `rank`), leaving `reservePages` for KV: a load must not take
   * the pages running seqs need next, or it would preempt them. "blocked": no room now;
   * finishing requests make some.
   */
  ensure(name: string, rank: number, reservePages: number): Readiness {
    const entry = this.#entry(name);
    switch (entry.state) {
      case "resident":
        return "resident";
      case "staging":
      case "loading":
        return "pending";
      case "unknown": {
        const room = this.#makeHostRoom(rank);
        if (room !== "room") return room;
        entry.state = "staging";
        this.#ops.push({ kind: "stage", adapterId: entry.id, name: entry.name, path: entry.path });
        return "pending";
      }
      case "staged":
        return this.#load(entry, rank, reservePages) ? "pending" : "blocked";
    }
  }

  /**
   * Brings the wanted adapters (`names`, soonest first) one tier closer to the pool, as room
   * allows (S-LoRA's prefetch). Nothing ranked after a blocked adapter takes room in the
   * tier it waits for. The first blocked adapter gets its room by draining (`#drainFor`).
   * Returns whether admission must hold: the pool's pages, not its adapter slots, are short
   * for that adapter in a unified pool, so each admission would take pages it waits for.
   * `reservePages(rank)`: KV pages a load for that rank leaves free; `seatsFree`: a queued
   * request could be admitted now (running below maxNumSeqs).
   */
  prefetch(
    names: readonly string[],
    reservePages: (rank: number) => number,
    seatsFree: boolean,
  ): boolean {
    this.#seatsFree = seatsFree;
    let hostOpen = true;
    let poolOpen = true;
    let blocked: { entry: AdapterEntry; rank: number } | null = null;
    for (const [rank, name] of names.entries()) {
      const entry = this.#entry(name);
      if (entry.state === "unknown" ? !hostOpen : entry.state === "staged" && !poolOpen) continue;
      if (this.ensure(name, rank, reservePages(rank)) !== "blocked") continue;
      if (entry.state === "unknown") hostOpen = false;
      else poolOpen = false;
      blocked ??= { entry, rank };
    }
    return this.#drainFor(blocked, blocked === null ? 0 : reservePages(blocked.rank));
  }

  /** Pool pages held by loads in flight: they become evictable once loaded (nothing pins them). */
  pagesLoading(): number {
    let pages = 0;
    for (const entry of this.#byName.values()) {
      if (entry.state === "loading") pages += entry.staged?.numPages ?? 0;
    }
    return pages;
  }

  /** The idle resident adapter evictOne(minRank, forLoad) would evict, for the pool's policy to weigh. */
  idleCandidate(minRank: number, forLoad = false): { lastUse: number } | null {
    return this.#idleVictim(
      minRank,
      (e) => e.state === "resident" && (!forLoad || this.#givesWay(e)),
    );
  }

  /**
   * Evicts one idle resident adapter ranked at or after `minRank`; false if there is none.
   * `forLoad`: the room is for another adapter, which only an adapter that gives way makes.
   */
  evictOne(minRank: number, forLoad = false): boolean {
    const victim = this.idleCandidate(minRank, forLoad) as AdapterEntry | null;
    if (victim === null) return false;
    this.#evictFromPool(victim);
    return true;
  }

  /**
   * The executor staged it. Returns an error message when it can never be loaded (then it is
   * dropped and its requests should fail), else null.
   */
  onStaged(staged: StagedAdapter): string | null {
    const entry = this.#byId.get(staged.adapterId);
    if (entry === undefined || entry.state !== "staging") {
      throw new UnknownAdapterError(`adapter ${staged.adapterId} is not being staged`);
    }
    if (staged.numPages > this.#pages.adapterCapacity) {
      entry.state = "unknown";
      this.#ops.push({ kind: "drop", adapterId: entry.id, tier: "host" });
      this.#forgetIfUnused(entry);
      return `adapter ${entry.name} needs ${staged.numPages} pages; the pool has ${this.#pages.adapterCapacity} for adapters`;
    }
    entry.state = "staged";
    entry.staged = staged;
    entry.fresh = true;
    entry.lastUse = this.#clock.tick();
    return null;
  }

  onLoaded(adapterId: number): void {
    const entry = this.#byId.get(adapterId);
    if (entry === undefined || entry.state !== "loading") {
      throw new UnknownAdapterError(`adapter ${adapterId} is not being loaded`);
    }
    entry.state = "resident";
    this.#counts.loads++;
  }

  /** A stage or load failed: the adapter is forgotten. Returns its name. */
  onFailed(adapterId: number): string {
    const entry = this.#byId.get(adapterId);
    if (entry === undefined || (entry.state !== "staging" && entry.state !== "loading")) {
      throw new UnknownAdapterError(`adapter ${adapterId} has no stage or load in flight`);
    }
    if (entry.state === "loading") {
      // The executor may have written some pages; no step reads them, so they are free now.
      this.#pages.freeAdapter(entry.id, null);
      this.#ops.push({ kind: "drop", adapterId: entry.id, tier: "host" });
    }
    entry.state = "unknown";
    entry.staged = null;
    this.#forgetIfUnused(entry);
    return entry.name;
  }

  /** Drops an adapter no request names from both tiers (vLLM's unload_lora_adapter). */
  unload(name: string): void {
    const entry = this.#byName.get(name);
    if (entry === undefined) return;
    if (entry.refs > 0) {
      throw new AdapterInUseError(`adapter ${name} is named by ${entry.refs} unfinished requests`);
    }
    if (entry.state === "staging" || entry.state === "loading") {
      throw new AdapterInUseError(`adapter ${name} is being ${entry.state.replace("ing", "ed")}`);
    }
    if (entry.state === "resident") {
      const fence = entry.lastStep > this.#completedStep ? entry.lastStep : null;
      this.#pages.freeAdapter(entry.id, fence);
    }
    if (entry.state !== "unknown")
      this.#ops.push({ kind: "drop", adapterId: entry.id, tier: "host" });
    this.#byName.delete(name);
    this.#byId.delete(entry.id);
  }

  /** The executor restarted (with `hostTier`): nothing is staged or loaded any more. */
  reset(hostTier: HostTier): void {
    this.#hostTier = hostTier;
    this.#drainBeneficiary = null;
    for (const entry of [...this.#byName.values()]) {
      entry.draining = false;
      entry.state = "unknown";
      entry.staged = null;
      entry.lastStep = -1;
      this.#forgetIfUnused(entry);
    }
    this.#completedStep = -1;
    this.#ops = [];
  }

  takeOps(): AdapterOp[] {
    const ops = this.#ops;
    this.#ops = [];
    return ops;
  }

  stats(): AdapterStats {
    const s = { resident: 0, loading: 0, staged: 0, staging: 0, hostBytes: 0, pins: 0 };
    for (const entry of this.#byName.values()) {
      if (entry.state !== "unknown") s[entry.state]++;
      s.hostBytes += entry.staged?.hostBytes ?? 0;
      s.pins += entry.pins;
    }
    return { ...s, ...this.#counts };
  }

  /** Nothing to remember of an adapter in no tier that no request names: keeps the maps bounded. */
  #forgetIfUnused(entry: AdapterEntry): void {
    if (entry.refs > 0 || entry.state !== "unknown") return;
    this.#byName.delete(entry.name);
    this.#byId.delete(entry.id);
  }

  #entry(name: string): AdapterEntry {
    const entry = this.#byName.get(name);
    if (entry === undefined) throw new UnknownAdapterError(`adapter ${name} is not known`);
    return entry;
  }

  #isIdle(entry: AdapterEntry): boolean {
    return entry.pins === 0 && entry.lastStep <= this.#completedStep;
  }

  /** The idle adapter to give up first: the least wanted, then the least recently used. */
  #idleVictim(minRank: number, eligible: (e: AdapterEntry) => boolean): AdapterEntry | null {
    let best: AdapterEntry | null = null;
    for (const entry of this.#byName.values()) {
      if (!eligible(entry) || !this.#isIdle(entry) || entry.wantRank < minRank) continue;
      if (
        best === null ||
        entry.wantRank > best.wantRank ||
        (entry.wantRank === best.wantRank && entry.lastUse < best.lastUse)
      ) {
        best = entry;
      }
    }
    return best;
  }

  /**
   * Whether evicting every idle resident adapter ranked after `rank` would make room for a
   * load of `numPages`. Checked before evicting any: evicting some and then giving up drops
   * adapters for nothing, and prefetching would load them again next step, and so on.
   */
  #canMakeRoom(
    numPages: number,
    rank: number,
    reservePages: number,
    draining: readonly AdapterEntry[] = [],
  ): boolean {
    const leaving = this.#idleAfter(rank, (e) => e.state === "resident");
    for (const e of draining) if (!leaving.includes(e)) leaving.push(e);
    if (this.#numInPool() - leaving.length >= this.#limits.maxLoras) return false;
    return this.#pagesSuffice(numPages, reservePages, leaving);
  }

  /**
   * Whether a load of `numPages` fits the pool's pages once `leaving` are evicted, with the
   * cached KV blocks the pool's policy may evict (settled ones for the load itself; all of
   * them for the KV room it leaves: the running seqs may evict them).
   */
  #pagesSuffice(numPages: number, reservePages: number, leaving: readonly AdapterEntry[]): boolean {
    const freed = leaving.reduce((sum, e) => sum + (e.staged?.numPages ?? 0), 0);
    const kv = this.#pool?.reclaimableKv() ?? { settled: 0, all: 0 };
    if (this.#pages.adapterRoom() + freed + kv.settled < numPages) return false;
    // Only a unified pool's adapter pages come out of what KV could have had.
    return !this.#pages.unified || this.#pages.kvRoom() + kv.all + freed - numPages >= reservePages;
  }

  /** Idle adapters ranked after `rank` that `eligible` accepts: what bringing in rank r may evict. */
  #idleAfter(rank: number, eligible: (e: AdapterEntry) => boolean): AdapterEntry[] {
    return [...this.#byName.values()].filter(
      (e) => eligible(e) && this.#givesWay(e) && this.#isIdle(e) && e.wantRank > rank,
    );
  }

  /**
   * Whether it may leave a tier for another adapter. An adapter queued requests want stays
   * while it is fresh: brought in since the last admission pass, its requests have not had
   * their chance yet (Engine.prefetch runs between passes). And it stays while no seat is
   * free, unless it is draining: the adapter brought in could not run before one of the
   * running requests ends, and by then the right one to evict (the one wanted last, as
   * Belady's MIN) may be another that those requests pin now.
   */
  #givesWay(entry: AdapterEntry): boolean {
    if (entry.wantRank === Number.POSITIVE_INFINITY) return true;
    return !entry.fresh && (this.#seatsFree || entry.draining);
  }

  #evictFromPool(entry: AdapterEntry): void {
    this.#pages.freeAdapter(entry.id, null);
    entry.state = "staged";
    entry.draining = false;
    this.#ops.push({ kind: "drop", adapterId: entry.id, tier: "pool" });
    this.#counts.evictions++;
  }

  #numInPool(): number {
    let n = 0;
    for (const e of this.#byName.values()) if (e.state === "resident" || e.state === "loading") n++;
    return n;
  }

  #load(entry: AdapterEntry, rank: number, reservePages: number): boolean {
    const staged = entry.staged as StagedAdapter;
    if (!this.#canMakeRoom(staged.numPages, rank, reservePages)) return false;
    let numInPool = this.#numInPool();
    while (numInPool >= this.#limits.maxLoras) {
      if (!this.evictOne(rank + 1, true)) return false;
      numInPool--;
    }
    while (!this.#pages.canAllocateAdapter(staged.numPages)) {
      if (!(this.#pool?.evictForAdapter(rank + 1) ?? this.evictOne(rank + 1, true))) return false;
    }
    // Only a unified pool's adapter pages come out of what KV could have had (cached KV
    // counts: the running seqs may evict it).
    while (
      this.#pages.unified &&
      this.#pages.kvRoom() + (this.#pool?.reclaimableKv().all ?? 0) - staged.numPages < reservePages
    ) {
      if (!this.evictOne(rank + 1, true)) return false;
    }
    entry.state = "loading";
    entry.fresh = true;
    entry.lastUse = this.#clock.tick();
    const pages = this.#pages.allocateAdapter(entry.id, staged.numPages);
    this.#ops.push({ kind: "load", adapterId: entry.id, pages });
    return true;
  }

  /**
   * Room in the host tier for one more adapter of the largest size allowed. The executor
   * refuses a stage that does not fit and never evicts (PROTOCOL.md `ready`), so this is
   * the tier's only owner: an adapter being staged counts at that largest size until its
   * `adapter_staged` says how much it took.
   */
  #makeHostRoom(rank: number): "room" | "pending" | "blocked" {
    for (;;) {
      if (this.#hostHasRoom([])) return "room";
      // Host-only copies go first; an idle resident adapter gives up both tiers.
      const victim =
        this.#idleVictim(rank + 1, (e) => e.state === "staged" && this.#givesWay(e)) ??
        this.#idleVictim(rank + 1, (e) => e.state === "resident" && this.#givesWay(e));
      if (victim === null) {
        // Stages in flight hold the largest size until their size is known: room may come.
        const staging = [...this.#byName.values()].some((e) => e.state === "staging");
        return staging ? "pending" : "blocked";
      }
      if (victim.state === "resident") this.#pages.freeAdapter(victim.id, null);
      victim.state = "unknown";
      victim.draining = false;
      victim.staged = null;
      this.#ops.push({ kind: "drop", adapterId: victim.id, tier: "host" });
      this.#counts.hostDrops++;
      this.#forgetIfUnused(victim);
    }
  }

  /** Whether the host tier has room for one more stage once `leaving` are dropped. */
  #hostHasRoom(leaving: readonly AdapterEntry[]): boolean {
    const { capacityBytes, maxAdapterBytes } = this.#hostTier;
    let count = 0;
    let bytes = 0;
    for (const e of this.#byName.values()) {
      if (e.state === "unknown" || leaving.includes(e)) continue;
      count++;
      bytes += e.staged?.hostBytes ?? maxAdapterBytes;
    }
    return count < this.#limits.maxCpuLoras && bytes + maxAdapterBytes <= capacityBytes;
  }

  /**
   * Room for the most wanted blocked adapter comes from pinned adapters ranked after it:
   * enough of them (not wanted first, then the least wanted, fewest pins, least recently
   * used) take no new requests until they are idle and evicted for it, within the longest
   * remaining run of their requests. Sticky while the same adapter stays the first blocked
   * one: the choice would otherwise move with LRU clocks and nothing would ever drain.
   * Returns whether admission must hold (see `prefetch`).
   */
  #drainFor(blocked: { entry: AdapterEntry; rank: number } | null, reservePages: number): boolean {
    if (blocked?.entry !== this.#drainBeneficiary) {
      for (const e of this.#byName.values()) e.draining = false;
      this.#drainBeneficiary = blocked?.entry ?? null;
    }
    if (blocked === null) return false;
    const { entry, rank } = blocked;
    const inHost = entry.state === "unknown";
    // Queued requests may have moved an adapter ahead of it since: that one is not drained.
    for (const e of this.#byName.values()) e.draining &&= e.wantRank > rank;
    const draining = [...this.#byName.values()].filter((e) => e.draining);
    const candidates = this.#busyAfter(rank).filter((e) => !e.draining);
    const hasRoom = (): boolean =>
      inHost
        ? this.#hostHasRoom([...draining, ...this.#idleAfter(rank, (e) => e.state !== "unknown")])
        : this.#canMakeRoom((entry.staged as StagedAdapter).numPages, rank, reservePages, draining);
    for (;;) {
      if (hasRoom()) return false;
      const next = candidates.shift();
      if (next === undefined) break;
      next.draining = true;
      draining.push(next);
    }
    // Not even every busy adapter after it makes room: adapters more wanted than it hold
    // the room (their requests go first and free it), or, in a unified pool, KV holds the
    // pages: then only finishing requests free them, and admissions would take them.
    for (const e of draining) e.draining = false;
    if (inHost || !this.#pages.unified) return false;
    const everyAdapter = [...this.#byName.values()].filter(
      (e) => e.state === "resident" || e.state === "loading",
    );
    return !this.#pagesSuffice(
      (entry.staged as StagedAdapter).numPages,
      reservePages,
      everyAdapter,
    );
  }

  /**
   * Resident adapters ranked after `rank` that requests or steps in flight hold, in the order
   * to drain them: not wanted first, then the least wanted, fewest pins, least recently used.
   */
  #busyAfter(rank: number): AdapterEntry[] {
    return [...this.#byName.values()]
      .filter((e) => e.state === "resident" && !this.#isIdle(e) && e.wantRank > rank)
      .sort((a, b) => b.wantRank - a.wantRank || a.pins - b.pins || a.lastUse - b.lastUse);
  }
}
