// The steps one executor life has not answered yet, oldest first, and the one timer that
// watches them: the oldest step's deadline (step-deadline.ts), counted from when it became
// the oldest, over its work and the next step's (which the executor may launch before it
// answers). A step sent behind it extends that deadline; each answer starts the clock of
// the step after it and is a sample of how fast this executor is.
import type { StepPlan } from "../protocol/messages.ts";
import type { StepDeadlines, StepWork } from "./step-deadline.ts";

/** One step in flight, as `sent` returns it. */
export interface WatchedStep {
  readonly stepId: number;
  readonly work: StepWork;
}

export class StepWatch {
  readonly #deadlines: StepDeadlines;
  readonly #onHang: (reason: string) => void;
  readonly #steps: WatchedStep[] = [];
  /** when the oldest step became the oldest (performance.now()) */
  #headSince = 0;
  #timer: NodeJS.Timeout | undefined;

  /** `onHang` ends the executor; it is called at most once per watched step. */
  constructor(deadlines: StepDeadlines, onHang: (reason: string) => void) {
    this.#deadlines = deadlines;
    this.#onHang = onHang;
  }

  /** A step goes out: it becomes the oldest, or extends the oldest's deadline. */
  sent(plan: StepPlan): WatchedStep {
    const step = { stepId: plan.stepId, work: this.#deadlines.work(plan) };
    this.#steps.push(step);
    if (this.#steps.length === 1) this.#headSince = performance.now();
    if (this.#steps.length <= 2) this.#arm();
    return step;
  }

  /** The step's reply came (`answered`), or its call ended otherwise. */
  settled(step: WatchedStep, answered: boolean): void {
    const index = this.#steps.indexOf(step);
    if (index === -1) return;
    this.#steps.splice(index, 1);
    if (index > 1) return;
    if (index === 0) {
      const now = performance.now();
      if (answered) this.#deadlines.observe(step.work, now - this.#headSince);
      this.#headSince = now;
    }
    this.#arm();
  }

  #arm(): void {
    clearTimeout(this.#timer);
    const [head, next] = this.#steps;
    if (head === undefined) return;
    const work = {
      flops: head.work.flops + (next?.work.flops ?? 0),
      tokens: head.work.tokens + (next?.work.tokens ?? 0),
    };
    const { ms, why } = this.#deadlines.deadline(work);
    const left = Math.max(0, this.#headSince + ms - performance.now());
    this.#timer = setTimeout(() => {
      this.#onHang(`hung: no reply to step ${head.stepId} in ${Math.round(ms)} ms (${why})`);
    }, left);
  }
}
