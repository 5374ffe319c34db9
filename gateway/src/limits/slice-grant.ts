import type { TenantLimits } from "../auth/principal.ts";
import { type Admission, type LimitState, minuteRefusal, roll } from "./limit-state.ts";

/**
 * A slice of a tenant's per-minute limits, leased by one isolate, which spends it locally.
 * `null`: that limit is not set, nothing was taken of it.
 */
export type Slice = { minute: number; requests: number | null; tokens: number | null };

/** What an isolate gives back of its previous slice: unspent requests and tokens (negative: an overrun). */
export type SliceReturn = { minute: number; requests: number; tokens: number };

export type SliceRequest = {
  /** The remainder of the isolate's previous slice, or null when it holds none. */
  returning: SliceReturn | null;
  /** Tokens the request that asks must reserve: the slice holds at least that many. */
  tokens: number;
  limits: TenantLimits;
};

export type SliceGrant = ({ ok: true } & Slice) | Extract<Admission, { ok: false }>;

/**
 * An isolate takes this fraction of what is left of a minute limit: slices shrink as the
 * tenant nears its limit, down to one request (and the asking request's tokens).
 */
export const sliceDivisor = 8;

/**
 * Grants an isolate a slice of the current minute window, after taking back what it returns.
 * Everything granted counts in the window at once (as exact admissions do), so the requests
 * and reserved tokens of a minute never pass the limits however many isolates hold slices;
 * what a slice leaves unspent is lost to others until it is returned or the minute ends.
 *
 * @example grantSlice(state, { returning: null, tokens: 148, limits }, Date.now())
 */
export function grantSlice(state: LimitState, request: SliceRequest, now: number): SliceGrant {
  roll(state, now);
  takeBack(state, request.returning);
  const { limits } = request;
  const refusal = minuteRefusal(state, limits, 1, request.tokens, now);
  if (refusal !== null && !refusal.ok) return refusal;
  const requests =
    limits.requestsPerMinute === null
      ? null
      : Math.max(1, Math.floor((limits.requestsPerMinute - state.minuteRequests) / sliceDivisor));
  const tokens =
    limits.tokensPerMinute === null
      ? null
      : Math.max(
          request.tokens,
          Math.floor((limits.tokensPerMinute - state.minuteTokens) / sliceDivisor),
        );
  state.minuteRequests += requests ?? 0;
  state.minuteTokens += tokens ?? 0;
  return { ok: true, minute: state.minute, requests, tokens };
}

/**
 * Credits a returned remainder to the window it was granted in; after that window, only an
 * overrun (tokens used beyond what was reserved) still counts, charged to the current one.
 */
function takeBack(state: LimitState, returning: SliceReturn | null): void {
  if (returning === null) return;
  if (returning.minute === state.minute) {
    state.minuteRequests = Math.max(0, state.minuteRequests - returning.requests);
    state.minuteTokens = Math.max(0, state.minuteTokens - returning.tokens);
  } else if (returning.tokens < 0) {
    state.minuteTokens -= returning.tokens;
  }
}
