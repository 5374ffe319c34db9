import type { TenantLimits } from "../auth/principal.ts";

/**
 * A tenant's counters. Windows are fixed: the current UTC minute for requests
 * and tokens, the current UTC calendar month for the token quota. Token counts
 * are reserved at admission from an estimate and corrected when the request
 * settles with its real usage.
 */
export type LimitState = {
  minute: number; // floor(unix ms / 60_000)
  minuteRequests: number;
  minuteTokens: number;
  month: string; // "YYYY-MM", UTC
  monthTokens: number;
  /** Admitted, not yet settled requests: the gateway's request key -> reservation. */
  open: Record<string, Reservation>;
};

export type Reservation = {
  tokens: number;
  minute: number;
  month: string;
  stream: boolean;
  /** Unix ms after which an unsettled reservation (a lost settle call) stops holding a stream slot. */
  leaseUntil: number;
};

export type AdmissionRequest = {
  /** The gateway's own id of the request (never the client's x-request-id, which anyone may reuse). */
  requestKey: string;
  estimatedTokens: number;
  stream: boolean;
  limits: TenantLimits;
};

export type LimitCode =
  | "requests_per_minute"
  | "tokens_per_minute"
  | "concurrent_streams"
  | "monthly_token_quota";

export type Admission =
  | { ok: true }
  | { ok: false; code: LimitCode; message: string; retryAfterSeconds: number };

/** A request that never settles releases its stream slot after this long. */
export const leaseMs = 15 * 60_000;

export function emptyLimitState(now: number): LimitState {
  return {
    minute: minuteOf(now),
    minuteRequests: 0,
    minuteTokens: 0,
    month: monthOf(now),
    monthTokens: 0,
    open: {},
  };
}

/**
 * Admits or refuses one request, mutating `state` only when it is admitted. A key that is
 * already open was admitted before (a batch line run again after an interrupted alarm):
 * it is admitted again without reserving twice.
 *
 * @example admit(state, { requestKey: "req_1", estimatedTokens: 300, stream: false, limits }, Date.now())
 */
export function admit(state: LimitState, request: AdmissionRequest, now: number): Admission {
  roll(state, now);
  if (Object.hasOwn(state.open, request.requestKey)) return { ok: true };
  const { limits } = request;
  const minuteLeft = Math.max(1, Math.ceil(((state.minute + 1) * 60_000 - now) / 1000));
  if (limits.requestsPerMinute !== null && state.minuteRequests + 1 > limits.requestsPerMinute) {
    return refuse(
      "requests_per_minute",
      `Rate limit reached: ${limits.requestsPerMinute} requests per minute`,
      minuteLeft,
    );
  }
  if (
    limits.tokensPerMinute !== null &&
    state.minuteTokens + request.estimatedTokens > limits.tokensPerMinute
  ) {
    return refuse(
      "tokens_per_minute",
      `Rate limit reached: ${limits.tokensPerMinute} tokens per minute (this request may use up to ${request.estimatedTokens}: its prompt's bound plus max_tokens per choice, or the model's context when max_tokens is not set)`,
      minuteLeft,
    );
  }
  if (
    limits.monthlyTokenQuota !== null &&
    state.monthTokens + request.estimatedTokens > limits.monthlyTokenQuota
  ) {
    return refuse(
      "monthly_token_quota",
      `Monthly token quota of ${limits.monthlyTokenQuota} reached`,
      Math.ceil((nextMonthStart(now) - now) / 1000),
    );
  }
  if (
    request.stream &&
    limits.concurrentStreams !== null &&
    openStreams(state, now) >= limits.concurrentStreams
  ) {
    return refuse(
      "concurrent_streams",
      `At most ${limits.concurrentStreams} concurrent streams`,
      1,
    );
  }
  state.minuteRequests += 1;
  state.minuteTokens += request.estimatedTokens;
  state.monthTokens += request.estimatedTokens;
  state.open[request.requestKey] = {
    tokens: request.estimatedTokens,
    minute: state.minute,
    month: state.month,
    stream: request.stream,
    leaseUntil: now + leaseMs,
  };
  return { ok: true };
}

/**
 * Replaces a request's reservation by the tokens it really used. Returns false
 * when the request is not open (already settled, or never admitted), so a
 * second settle changes nothing.
 */
export function settle(
  state: LimitState,
  requestKey: string,
  actualTokens: number,
  now: number,
): boolean {
  roll(state, now);
  if (!Object.hasOwn(state.open, requestKey)) return false;
  const reservation = state.open[requestKey] as Reservation;
  delete state.open[requestKey];
  const difference = actualTokens - reservation.tokens;
  // A refund only applies to the window that was charged; an overrun is
  // charged to the current one, so real usage is never lost.
  if (reservation.minute === state.minute || difference > 0)
    state.minuteTokens = Math.max(0, state.minuteTokens + difference);
  if (reservation.month === state.month || difference > 0)
    state.monthTokens = Math.max(0, state.monthTokens + difference);
  return true;
}

function openStreams(state: LimitState, now: number): number {
  let count = 0;
  for (const [id, reservation] of Object.entries(state.open)) {
    if (reservation.leaseUntil <= now) delete state.open[id];
    else if (reservation.stream) count += 1;
  }
  return count;
}

function roll(state: LimitState, now: number): void {
  const minute = minuteOf(now);
  if (minute !== state.minute) {
    state.minute = minute;
    state.minuteRequests = 0;
    state.minuteTokens = 0;
  }
  const month = monthOf(now);
  if (month !== state.month) {
    state.month = month;
    state.monthTokens = 0;
  }
}

function refuse(code: LimitCode, message: string, retryAfterSeconds: number): Admission {
  return { ok: false, code, message, retryAfterSeconds };
}

function minuteOf(now: number): number {
  return Math.floor(now / 60_000);
}

function monthOf(now: number): string {
  return new Date(now).toISOString().slice(0, 7);
}

function nextMonthStart(now: number): number {
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}
