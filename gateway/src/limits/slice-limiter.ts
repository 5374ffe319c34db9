import type { TenantLimits } from "../auth/principal.ts";
import type { Env } from "../env.ts";
import { LruCache } from "../lru.ts";
import type { Admission } from "./limit-state.ts";
import { minuteOf } from "./limit-state.ts";
import type { Slice, SliceGrant } from "./slice-grant.ts";

/** A slice this isolate holds for a tenant: what is left of it, and the size of the last grant. */
type Held = Slice & { granted: { requests: number | null; tokens: number | null } };

/** A slice is topped up in the background once less than this share of its last grant is left. */
const lowWater = 0.25;

/** An admission spent from a slice: settled against the same minute when the request ends. */
export type SliceAdmission = { ok: true; minute: number } | Extract<Admission, { ok: false }>;

function limiterOf(env: Env, tenantId: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(tenantId));
}

/**
 * The isolate's side of per-minute limits (requests and tokens per minute): a request spends
 * from a slice this isolate leased from the tenant's TenantLimiter, so a tenant under its
 * limits costs no Durable Object round trip per request. Only the first request of a tenant
 * in a minute, and one that finds the slice empty, waits for a new slice; a slice running
 * low is topped up in the background (`waitUntil`). Renewing returns the previous slice's
 * remainder. Bound (slice-grant.ts): requests and reserved tokens of a minute never pass
 * the limits; a refusal can come while other isolates still hold unspent slices, at most
 * one each, each at most 1/8 of what was left when it was taken.
 */
export class SliceLimiter {
  /** Per tenant; a slice is worth nothing after its minute, and one dropped is only not returned. */
  readonly #held: LruCache<Held>;
  readonly #renewals = new Map<string, { grant: Promise<SliceGrant>; tokens: number }>();
  readonly #toppingUp = new Set<string>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#held = new LruCache(10_000, 60_000, now);
  }

  /**
   * Admits one request of `tokens` (its reservation) against the tenant's per-minute limits,
   * from the slice when it holds enough, else from a new one.
   */
  async admit(
    env: Env,
    tenantId: string,
    limits: TenantLimits,
    tokens: number,
    background: (work: Promise<unknown>) => void,
  ): Promise<SliceAdmission> {
    for (let fresh = false; ; ) {
      const held = this.#fits(tenantId, limits, tokens, !fresh);
      if (held !== null) {
        if (held.requests !== null) held.requests -= 1;
        if (held.tokens !== null) held.tokens -= tokens;
        this.#topUpIfLow(env, tenantId, limits, held, background);
        return { ok: true, minute: held.minute };
      }
      // One renewal at a time per tenant: a request that finds one running waits for it and
      // tries the slice again, or renews for itself when it asks fewer tokens than was refused.
      const pending = this.#renewals.get(tenantId);
      if (pending !== undefined) {
        const grant = await pending.grant.catch(() => null);
        const mayAskAgain = grant !== null && !grant.ok && grant.code === "tokens_per_minute";
        if (grant !== null && !grant.ok && !(mayAskAgain && tokens < pending.tokens)) {
          if (this.#fits(tenantId, limits, tokens) === null) return grant;
        }
        fresh = false;
        continue;
      }
      const grant = await this.#renew(env, tenantId, limits, tokens);
      // A top-up that landed meanwhile may hold what the refusal could not give.
      if (!grant.ok && this.#fits(tenantId, limits, tokens) === null) return grant;
      // A slice just granted is spent whatever this isolate's clock says of its minute.
      fresh = grant.ok;
    }
  }

  /** Gives the tokens a request reserved but did not use back to the slice of its minute. */
  settle(tenantId: string, minute: number, reserved: number, used: number): void {
    const held = this.#held.get(tenantId);
    if (held === undefined || held.tokens === null) return;
    if (held.minute === minute) held.tokens += reserved - used;
    // An overrun of an earlier minute is charged to the current slice; a refund is not
    // (that window is over).
    else if (used > reserved) held.tokens -= used - reserved;
  }

  /** What this isolate holds unspent of the tenant's slice, or null when none. */
  holding(tenantId: string): { requests: number | null; tokens: number | null } | null {
    const held = this.#held.get(tenantId);
    return held === undefined ? null : { requests: held.requests, tokens: held.tokens };
  }

  /** The slice, when it is this minute's, covers the limits set now and holds the request. */
  #fits(tenantId: string, limits: TenantLimits, tokens: number, checkMinute = true): Held | null {
    const held = this.#held.get(tenantId);
    if (held === undefined || (checkMinute && held.minute !== minuteOf(this.#now()))) return null;
    const requestsOk =
      limits.requestsPerMinute === null || (held.requests !== null && held.requests >= 1);
    const tokensOk =
      limits.tokensPerMinute === null || (held.tokens !== null && held.tokens >= tokens);
    return requestsOk && tokensOk ? held : null;
  }

  /** Returns the slice's remainder and leases a new one that holds `tokens`; one call at a time waits on it. */
  #renew(env: Env, tenantId: string, limits: TenantLimits, tokens: number): Promise<SliceGrant> {
    // The remainder goes back; the slice stays (empty) so tokens settled meanwhile land in it.
    const old = this.#held.get(tenantId);
    const returning =
      old === undefined
        ? null
        : { minute: old.minute, requests: old.requests ?? 0, tokens: old.tokens ?? 0 };
    if (old !== undefined) {
      if (old.requests !== null) old.requests = 0;
      if (old.tokens !== null) old.tokens = 0;
    }
    const renewal = limiterOf(env, tenantId)
      .lease({ returning, tokens, limits })
      .then((grant) => {
        if (grant.ok) this.#merge(tenantId, grant);
        return grant;
      })
      .finally(() => {
        if (this.#renewals.get(tenantId)?.grant === renewal) this.#renewals.delete(tenantId);
      });
    this.#renewals.set(tenantId, { grant: renewal, tokens });
    return renewal;
  }

  /** Leases more in the background when the slice runs low, so requests rarely wait for one. */
  #topUpIfLow(
    env: Env,
    tenantId: string,
    limits: TenantLimits,
    held: Held,
    background: (work: Promise<unknown>) => void,
  ): void {
    const low = (left: number | null, granted: number | null) =>
      left !== null && granted !== null && left < granted * lowWater;
    const isLow =
      low(held.requests, held.granted.requests) || low(held.tokens, held.granted.tokens);
    if (!isLow || this.#toppingUp.has(tenantId) || this.#renewals.has(tenantId)) return;
    this.#toppingUp.add(tenantId);
    background(
      limiterOf(env, tenantId)
        .lease({ returning: null, tokens: 0, limits })
        .then((grant) => {
          if (grant.ok) this.#merge(tenantId, grant);
        })
        .finally(() => this.#toppingUp.delete(tenantId)),
    );
  }

  /** Adds a grant to the slice of its minute, or starts one for a later minute (one for an earlier minute is stale). */
  #merge(tenantId: string, grant: Slice): void {
    const granted = { requests: grant.requests, tokens: grant.tokens };
    const held = this.#held.get(tenantId);
    if (held === undefined || held.minute < grant.minute) {
      this.#held.set(tenantId, { ...grant, granted });
      return;
    }
    if (held.minute > grant.minute) return;
    held.requests = add(held.requests, grant.requests);
    held.tokens = add(held.tokens, grant.tokens);
    held.granted = granted;
  }
}

function add(a: number | null, b: number | null): number | null {
  return a === null ? b : b === null ? a : a + b;
}
