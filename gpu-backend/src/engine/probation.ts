import type { Sequence } from "./sequence.ts";

/**
 * Failure isolation's second chance. The requests an executor failure involved (the
 * supervisor, serving/recovery.ts, names them: `suspects` of `executorRestarted`) come
 * back one at a time: a suspect waits here, outside the scheduler's queue, until the one
 * on probation before it has passed (sampled a token after its recompute: it got past the
 * work that failed) or finished. So a suspect shares its steps with no other suspect, and
 * when a step fails with the one on probation in it, that request is the new element of
 * the batch: the supervisor blames it alone. Requests that are not suspects run as ever.
 *
 *   probation.hold(seq);                 // a suspect, out of the scheduler's queue
 *   const next = probation.next();       // the one whose turn it is: queue it
 *   probation.passed(next);              // it sampled after its recompute
 */
export class Probation {
  readonly #held: Sequence[] = [];
  #current: Sequence | null = null;

  /** the suspect on probation now (queued or running in the scheduler), or null */
  get current(): Sequence | null {
    return this.#current;
  }

  /** suspects waiting for their turn */
  get held(): readonly Sequence[] {
    return this.#held;
  }

  /** Puts a suspect in line (the caller has taken it out of the scheduler's queue). */
  hold(seq: Sequence): void {
    if (seq !== this.#current && !this.#held.includes(seq)) this.#held.push(seq);
  }

  /** The suspect whose turn has come, for the caller to queue; null when none has. */
  next(): Sequence | null {
    if (this.#current !== null) return null;
    this.#current = this.#held.shift() ?? null;
    return this.#current;
  }

  /** The one on probation got past its failure: the next one's turn can come. */
  passed(seq: Sequence): void {
    if (seq === this.#current) this.#current = null;
  }

  /** A request left the engine (finished, aborted, failed) wherever it was in line. */
  forget(seq: Sequence): void {
    this.passed(seq);
    const index = this.#held.indexOf(seq);
    if (index !== -1) this.#held.splice(index, 1);
  }
}
