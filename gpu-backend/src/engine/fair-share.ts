/**
 * Virtual token counters (VTC; Sheng et al., "Fairness in Serving Large Language Models",
 * OSDI 2024): each tenant's counter grows by the weighted tokens it was served, and the next
 * admission goes to the active tenant with the smallest counter.
 *
 * Bound: while two tenants A and B are both backlogged (and both were active from the same
 * moment, so no lift intervenes), their served costs differ by at most
 *   promptWeight × longest prompt + maxNumSeqs × outputWeight × largest maxTokens.
 * Why: A is admitted only when its counter is not above B's, and the admission adds at most
 * the first term; after A's last admission only its at most maxNumSeqs running requests
 * earn, each at most outputWeight × maxTokens. (The paper's Theorem 4.4 has the same shape.)
 * Prompt cost is charged at first admission, output cost per token served; recomputation
 * after preemption is not charged. fair-share.test.ts checks the bound under skewed loads.
 * Adapters: a tenant whose queued requests all wait for their adapters is passed over
 * only while the tenant admitted instead stays, with its prompt charged, within
 * promptWeight × longest prompt of the waiting tenant's counter (scheduler.ts `#admit`):
 * the same lead as A's admission at a counter not above B's, so the bound holds.
 *
 * Example:
 *   const vtc = new FairShare(1, 2);
 *   vtc.activate("a", []);           // a new tenant joins at the least active counter
 *   vtc.charge("a", 100, 0);         // 100 prompt tokens admitted
 *   vtc.pickTenant(["a", "b"]);      // "b"
 */
export class FairShare {
  readonly promptWeight: number;
  readonly outputWeight: number;
  readonly #counters = new Map<string, number>();
  /** the counter of the last tenant that went idle: a tenant arriving to an idle system starts there */
  #lastIdleCounter = 0;

  constructor(promptWeight: number, outputWeight: number) {
    this.promptWeight = promptWeight;
    this.outputWeight = outputWeight;
  }

  counter(tenant: string): number {
    return this.#counters.get(tenant) ?? 0;
  }

  /**
   * A tenant with no queued or running request got one. Its counter is lifted to the least
   * counter of the tenants active now, so idle time is not saved up as credit.
   */
  activate(tenant: string, activeTenants: Iterable<string>): void {
    let floor = Number.POSITIVE_INFINITY;
    for (const other of activeTenants) {
      if (other !== tenant) floor = Math.min(floor, this.counter(other));
    }
    if (floor === Number.POSITIVE_INFINITY) floor = this.#lastIdleCounter;
    this.#counters.set(tenant, Math.max(this.counter(tenant), floor));
  }

  /** A tenant's last queued or running request finished. */
  deactivate(tenant: string): void {
    this.#lastIdleCounter = this.counter(tenant);
  }

  charge(tenant: string, promptTokens: number, outputTokens: number): void {
    const cost = this.promptWeight * promptTokens + this.outputWeight * outputTokens;
    this.#counters.set(tenant, this.counter(tenant) + cost);
  }

  /** The candidate with the smallest counter; ties go to the earlier one in the list. */
  pickTenant(candidates: Iterable<string>): string | null {
    let best: string | null = null;
    let bestCounter = Number.POSITIVE_INFINITY;
    for (const tenant of candidates) {
      const c = this.counter(tenant);
      if (c < bestCounter) {
        best = tenant;
        bestCounter = c;
      }
    }
    return best;
  }
}
