import type { FairShare } from "./fair-share.ts";
import type { Sequence } from "./sequence.ts";

/**
 * Requests waiting for admission: one FIFO per tenant; fair share (VTC) decides which
 * tenant goes next, and the scheduler takes its oldest request that can start (one whose
 * adapter is still loading waits). Preempted requests go back to the front of their
 * tenant's queue.
 */
export class WaitingQueue {
  readonly #byTenant = new Map<string, Sequence[]>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(seq: Sequence): void {
    this.#queue(seq.req.tenant).push(seq);
    this.#size++;
  }

  pushFront(seq: Sequence): void {
    this.#queue(seq.req.tenant).unshift(seq);
    this.#size++;
  }

  remove(seq: Sequence): void {
    const queue = this.#byTenant.get(seq.req.tenant);
    const index = queue?.indexOf(seq) ?? -1;
    if (queue === undefined || index === -1) return;
    queue.splice(index, 1);
    if (queue.length === 0) this.#byTenant.delete(seq.req.tenant);
    this.#size--;
  }

  countOf(tenant: string): number {
    return this.#byTenant.get(tenant)?.length ?? 0;
  }

  /** The tenant's queued requests, oldest first. */
  of(tenant: string): readonly Sequence[] {
    return this.#byTenant.get(tenant) ?? [];
  }

  all(): IterableIterator<Sequence[]> {
    return this.#byTenant.values();
  }

  /** The tenant with the smallest counter among those with queued requests, except `skip`. */
  pickTenant(fairShare: FairShare, skip: ReadonlySet<string>): string | null {
    const candidates = [...this.#byTenant.keys()].filter((tenant) => !skip.has(tenant));
    return fairShare.pickTenant(candidates);
  }

  /**
   * Up to `limit` queued requests in the order admission will likely take them: tenants by
   * counter, round robin over their FIFOs (so one tenant's backlog does not fill the window).
   */
  fairOrder(fairShare: FairShare, limit: number): Sequence[] {
    const queues = [...this.#byTenant.entries()]
      .sort(([a], [b]) => fairShare.counter(a) - fairShare.counter(b))
      .map(([, queue]) => queue);
    const order: Sequence[] = [];
    for (let depth = 0; order.length < limit; depth++) {
      let any = false;
      for (const queue of queues) {
        const seq = queue[depth];
        if (seq === undefined) continue;
        any = true;
        order.push(seq);
        if (order.length === limit) break;
      }
      if (!any) break;
    }
    return order;
  }

  #queue(tenant: string): Sequence[] {
    let queue = this.#byTenant.get(tenant);
    if (queue === undefined) {
      queue = [];
      this.#byTenant.set(tenant, queue);
    }
    return queue;
  }
}
