// When a step counts as hung. A fixed timeout either kills honest long steps (a 2,048-token
// prefill chunk of SmolLM2-135M takes about a minute on a 2-core CPU) or waits minutes for
// a hung decode step on a GPU, so the deadline scales with the step's work and with how
// fast this executor has been on recent steps of comparable work:
//
//   work(step)     = Σ_seq n · D  +  Σ_seq n · (c + (n + 1) / 2) · A  +  sampled · H     FLOPs
//                    (n new tokens on c cached ones; D the dense FLOPs of one token, A those
//                    of attending to one position, H the LM head's: all from `ready`)
//   msPerFlop      = the highest ms / FLOP of the last 32 steps whose work was at least 1/16
//                    of this one's; of all 32 when none was; before any step, a prior:
//                    `ms = tokens · 1 ms + work / 5 GFLOP/s` on a CPU (0.05 ms and
//                    5 TFLOP/s on a GPU): slower than any device we serve on
//   deadline       = max(floorMs, slack · msPerFlop · work)
//
// A step is timed from when it is the oldest unanswered one (steps queue behind each other
// in the executor), and its work counts the step after it too: the executor launches a
// step before it answers the one before (PROTOCOL.md "Conversation and supervision").
import { type ModelInfo, StepFlag, type StepPlan } from "../protocol/messages.ts";

export interface StepDeadlineOptions {
  /** no step counts as hung sooner */
  floorMs: number;
  /** the deadline is this many times the predicted duration */
  slack: number;
}

/** A step's size: FLOPs as `work(plan)` counts them, and its new tokens. */
export interface StepWork {
  flops: number;
  tokens: number;
}

const WINDOW = 32;
/** samples of at least this share of a step's work count as comparable to it */
const COMPARABLE = 1 / 16;
const PRIOR = {
  cpu: { msPerToken: 1, flopsPerMs: 5e6 },
  gpu: { msPerToken: 0.05, flopsPerMs: 5e9 },
};

export class StepDeadlines {
  readonly #options: StepDeadlineOptions;
  readonly #denseFlopsPerToken: number;
  readonly #attentionFlopsPerPosition: number;
  readonly #headFlops: number;
  readonly #prior: { msPerToken: number; flopsPerMs: number };
  /** the last WINDOW answered steps: their work and wall ms as the oldest in flight */
  readonly #samples: { flops: number; ms: number }[] = [];

  constructor(model: ModelInfo, options: StepDeadlineOptions) {
    this.#options = options;
    const perLayer = Object.values(model.modules).reduce((sum, [n, m]) => sum + n * m, 0);
    this.#denseFlopsPerToken = 2 * model.numLayers * perLayer;
    // QKᵀ and PV: 2 FLOPs per multiply-add, per query head dimension
    this.#attentionFlopsPerPosition = 4 * model.numLayers * model.numHeads * model.headDim;
    this.#headFlops = 2 * model.hiddenSize * model.vocabSize;
    this.#prior = model.device === "cpu" ? PRIOR.cpu : PRIOR.gpu;
  }

  /** The FLOPs of one step plan. */
  work(plan: StepPlan): StepWork {
    let tokens = 0;
    let positions = 0;
    let sampled = 0;
    for (let i = 0; i < plan.seqIds.length; i++) {
      const n = plan.numNewTokens[i] as number;
      tokens += n;
      positions += n * ((plan.numCached[i] as number) + (n + 1) / 2);
      if ((plan.flags[i] as number) & StepFlag.sample) sampled++;
    }
    const flops =
      tokens * this.#denseFlopsPerToken +
      positions * this.#attentionFlopsPerPosition +
      sampled * this.#headFlops;
    return { flops, tokens };
  }

  /** How long a step of `work` may take before it counts as hung, and why. */
  deadline(work: StepWork): { ms: number; why: string } {
    const { floorMs, slack } = this.#options;
    const gflop = (work.flops / 1e9).toPrecision(3);
    const msPerFlop = this.#msPerFlop(work.flops);
    if (msPerFlop === null) {
      const prior = work.tokens * this.#prior.msPerToken + work.flops / this.#prior.flopsPerMs;
      const ms = Math.max(floorMs, slack * prior);
      return { ms, why: `max(floor ${floorMs} ms, ${slack} x prior ${Math.round(prior)} ms)` };
    }
    const predicted = msPerFlop * work.flops;
    return {
      ms: Math.max(floorMs, slack * predicted),
      why: `max(floor ${floorMs} ms, ${slack} x ${gflop} GFLOP at ${(msPerFlop * 1e9).toPrecision(3)} ms/GFLOP)`,
    };
  }

  /** A step of `work` was answered `ms` after it became the oldest in flight. */
  observe(work: StepWork, ms: number): void {
    if (work.flops <= 0) return;
    this.#samples.push({ flops: work.flops, ms });
    if (this.#samples.length > WINDOW) this.#samples.shift();
  }

  #msPerFlop(flops: number): number | null {
    if (this.#samples.length === 0) return null;
    const comparable = this.#samples.filter((s) => s.flops >= flops * COMPARABLE);
    const basis = comparable.length > 0 ? comparable : this.#samples;
    return Math.max(...basis.map((s) => s.ms / s.flops));
  }
}
