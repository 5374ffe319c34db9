import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env.ts";
import {
  type Admission,
  type AdmissionRequest,
  admit,
  emptyLimitState,
  type LimitState,
  settle,
} from "./limit-state.ts";

const stateKey = "state";

/**
 * One instance per tenant (named by tenant id) owns that tenant's limits, so
 * they hold across every isolate and location. Each method runs to completion
 * without awaiting between reading and writing the state, and the runtime's
 * input gate delivers one call at a time, so concurrent admissions are exact.
 * The output gate holds each reply until its storage write is durable.
 */
export class TenantLimiter extends DurableObject<Env> {
  #state: LimitState = emptyLimitState(Date.now());

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      this.#state = (await ctx.storage.get<LimitState>(stateKey)) ?? emptyLimitState(Date.now());
    });
  }

  admit(request: AdmissionRequest): Admission {
    const result = admit(this.#state, request, Date.now());
    if (result.ok) void this.ctx.storage.put(stateKey, this.#state);
    return result;
  }

  settle(requestKey: string, actualTokens: number): boolean {
    const changed = settle(this.#state, requestKey, actualTokens, Date.now());
    if (changed) void this.ctx.storage.put(stateKey, this.#state);
    return changed;
  }

  /** Read-only view for the admin API and tests. */
  snapshot(): LimitState {
    return structuredClone(this.#state);
  }
}
