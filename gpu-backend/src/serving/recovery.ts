// What the serving loop does when it loses the executor (a step failed: an `error` reply,
// a result the engine refused, or the executor crashed, hung or broke the protocol while
// steps were in flight). With the executor client's restart policy (executor/client.ts)
// this is the backend's one supervisor; its policy for the requests:
//
// - The failure is charged to the requests of the failed steps: the step an `error` or
//   a refused result names, else every step in flight. When the suspect on probation
//   (engine/probation.ts) is among them, it alone is charged: it is the one request
//   those steps held that no earlier step had (the others ran without failing).
// - A request charged a second time is failed with ExecutorFailedError (500
//   `executor_failed`, not to be retried: it would fail again) and never re-queued.
// - Every other unfinished request is re-queued once a fresh executor is up (recomputed;
//   nothing is emitted twice); those charged once come back one at a time, on probation.
//   When the client gives up (its restart policy), they all end with a retriable 503.
//
// So an input that hangs or crashes the executor costs two restarts and fails only its
// own request. Outcomes of calls made before the loss are ignored (epoch).
import type { Logger } from "pino";
import type { Engine, RequestOutput } from "../engine/index.ts";
import { BackendUnavailableError, EXECUTOR_GAVE_UP, ExecutorFailedError } from "./errors.ts";
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
  /** unfinished requests charged with a failed step: request id -> why it failed */
  readonly #charged = new Map<string, string>();

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

  /**
   * Brings the executor back once for all the calls that saw it go. `failed`: the
   * requests of the steps that failed (empty when no step was in flight).
   */
  executorLost(error: unknown, failed: readonly string[]): void {
    if (this.#recovering !== null) return;
    const reason = error instanceof Error ? error.message : String(error);
    this.#deps.logger.error({ err: error, failed }, "executor lost");
    this.#epoch++;
    this.#deps.metrics.executorRestarted();
    const suspects = this.#charge(failed, reason);
    this.#recovering = this.#recover(suspects).finally(() => {
      this.#recovering = null;
      this.#deps.onEnd();
    });
  }

  /** Charges the failure; fails the requests charged twice; returns the new suspects. */
  #charge(failed: readonly string[], reason: string): string[] {
    const { engine, streams, logger } = this.#deps;
    for (const id of this.#charged.keys()) if (!streams.has(id)) this.#charged.delete(id);
    const probationer = engine.probationer;
    const blamed = probationer !== null && failed.includes(probationer) ? [probationer] : failed;
    const suspects: string[] = [];
    const outputs: RequestOutput[] = [];
    for (const id of blamed) {
      const before = this.#charged.get(id);
      if (before === undefined) {
        this.#charged.set(id, reason);
        suspects.push(id);
        continue;
      }
      this.#charged.delete(id);
      const message = `the executor failed twice on steps with this request (${before}; then ${reason}); it is not retried`;
      const output = engine.fail(id, message);
      if (output !== null) outputs.push(output);
    }
    if (outputs.length > 0) logger.warn({ failed: outputs.map((o) => o.id) }, "requests failed");
    streams.deliver(outputs, ExecutorFailedError);
    return suspects;
  }

  async #recover(suspects: string[]): Promise<void> {
    const { supervisor, engine, streams, grammars, logger } = this.#deps;
    try {
      const model = await supervisor.recover();
      // Before the re-queued requests run: their grammar ids must mean the same again.
      await grammars.executorRestarted();
      // Requests the new pool cannot hold any more come back finished with an error.
      streams.deliver(engine.executorRestarted(model, suspects), BackendUnavailableError);
      logger.info({ suspects }, "executor restarted; unfinished requests re-queued");
    } catch (error) {
      logger.error({ err: error }, "no executor came back; unfinished requests fail");
      streams.failAll(new BackendUnavailableError(EXECUTOR_GAVE_UP));
    }
  }
}
