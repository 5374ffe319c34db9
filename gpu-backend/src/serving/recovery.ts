// What the serving loop does when it loses the executor (a call failed with
// ExecutorUnavailable, or a reply the engine could not take): it stops scheduling, asks
// the executor's one supervisor (executor/client.ts, whose restart policy is the only
// one) for a fresh executor once for all the calls that saw the old one go, and then
// either re-queues every unfinished request in the engine (recomputed; nothing emitted
// twice) or, when the supervisor gives up, ends them with a retriable 503. Outcomes of
// calls made before the loss are ignored (epoch).
import type { Logger } from "pino";
import type { Engine } from "../engine/index.ts";
import { ExecutorUnavailable } from "../executor/errors.ts";
import { BackendUnavailableError, EXECUTOR_GAVE_UP } from "./errors.ts";
import type { ExecutorSupervisor } from "./executor-link.ts";
import type { GrammarRegistry } from "./grammar-registry.ts";
import type { ServingMetrics } from "./metrics.ts";
import type { RequestStreams } from "./request-streams.ts";

export interface RecoveryDeps {
  supervisor: ExecutorSupervisor;
  engine: Engine;
  streams: RequestStreams;
  grammars: GrammarRegistry;
  metrics: ServingMetrics;
  logger: Logger;
  /** called once a recovery has ended, either way: the loop schedules again */
  onEnd: () => void;
}

export class Recovery {
  readonly #deps: RecoveryDeps;
  #recovering: Promise<void> | null = null;
  #epoch = 0;

  constructor(deps: RecoveryDeps) {
    this.#deps = deps;
  }

  /** bumped on each loss: an outcome of a call from an older epoch is ignored */
  get epoch(): number {
    return this.#epoch;
  }

  get recovering(): boolean {
    return this.#recovering !== null;
  }

  /** Brings the executor back once for all the calls that saw it go. */
  executorLost(error: unknown): void {
    if (this.#recovering !== null) return;
    const unavailable = error instanceof ExecutorUnavailable;
    this.#deps.logger.error({ err: error }, unavailable ? "executor lost" : "executor call failed");
    this.#epoch++;
    this.#deps.metrics.executorRestarted();
    this.#recovering = this.#recover().finally(() => {
      this.#recovering = null;
      this.#deps.onEnd();
    });
  }

  async #recover(): Promise<void> {
    const { supervisor, engine, streams, grammars, logger } = this.#deps;
    try {
      const model = await supervisor.recover();
      // Before the re-queued requests run: their grammar ids must mean the same again.
      await grammars.executorRestarted();
      // Requests the new pool cannot hold any more come back finished with an error.
      streams.deliver(engine.executorRestarted(model), BackendUnavailableError);
      logger.info("executor restarted; unfinished requests re-queued");
    } catch (error) {
      logger.error({ err: error }, "no executor came back; unfinished requests fail");
      streams.failAll(new BackendUnavailableError(EXECUTOR_GAVE_UP));
    }
  }
}
