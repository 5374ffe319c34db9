// The loop's "send" and "update": a step plan or adapter op goes to the executor, and
// its outcome comes back to the engine (engine.update, adapterStaged / adapterLoaded /
// adapterFailed) and from there to the streams. An adapter op's refusal (the executor's
// `error` reply) fails what it concerns. A step that fails in any way (an `error` reply,
// a result the engine refuses, or the executor lost while it was in flight) means the
// executor is lost, which recovery.ts handles, told which requests the failed steps held.
// Outcomes from before a loss are dropped (recovery's epoch).
import type { Logger } from "pino";
import type { AdapterOp, Engine } from "../engine/index.ts";
import { ExecutorRequestError } from "../executor/errors.ts";
import type { StagedAdapter, StepPlan } from "../protocol/messages.ts";
import { AdapterLoadError, ExecutorFailedError } from "./errors.ts";
import type { ExecutorLink } from "./executor-link.ts";
import type { ServingMetrics } from "./metrics.ts";
import type { Recovery } from "./recovery.ts";
import type { RequestStreams } from "./request-streams.ts";

export interface ExecutorCallsDeps {
  executor: ExecutorLink;
  engine: Engine;
  streams: RequestStreams;
  recovery: Recovery;
  metrics: ServingMetrics;
  logger: Logger;
  /** called after each outcome: the loop may schedule again */
  onOutcome: () => void;
}

export class ExecutorCalls {
  readonly #deps: ExecutorCallsDeps;
  /** performance.now() of the last step result (step wall times, metrics) */
  #lastStepResultAt = 0;
  /** the steps sent and not answered: step id -> the ids of the requests in it */
  readonly #inFlight = new Map<number, string[]>();

  constructor(deps: ExecutorCallsDeps) {
    this.#deps = deps;
  }

  sendStep(plan: StepPlan): void {
    const { executor, engine, streams, recovery, metrics, onOutcome } = this.#deps;
    const epoch = recovery.epoch;
    const sentAt = performance.now();
    const requests = engine.requestIdsOf(plan.seqIds);
    this.#inFlight.set(plan.stepId, requests);
    executor.step(plan).then(
      (result) => {
        if (epoch !== recovery.epoch) return;
        this.#inFlight.delete(plan.stepId);
        // Steps overlap: this one had the executor to itself from the later of its send
        // and the result before it.
        const now = performance.now();
        const wallMs = now - Math.max(sentAt, this.#lastStepResultAt);
        this.#lastStepResultAt = now;
        metrics.stepDone(wallMs, result.forwardMs, result.sampleMs);
        try {
          streams.deliver(engine.update(result, Date.now()), ExecutorFailedError);
        } catch (error) {
          // The engine and executor disagree (e.g. StepResultError): a fresh executor and
          // re-queued requests put them back in step; this step's requests are charged.
          this.#lost(error, requests);
          return;
        }
        onOutcome();
      },
      (error: unknown) => {
        if (epoch !== recovery.epoch) return;
        // An `error` reply names the step that failed; a loss, every step in flight.
        const failed =
          error instanceof ExecutorRequestError ? requests : [...this.#inFlight.values()].flat();
        this.#lost(error, failed);
      },
    );
  }

  /** The executor is lost: `failed` holds the requests of the steps that failed. */
  #lost(error: unknown, failed: string[]): void {
    this.#inFlight.clear();
    this.#deps.recovery.executorLost(error, [...new Set(failed)]);
  }

  sendAdapterOp(op: AdapterOp): void {
    const { executor, engine, streams, recovery, metrics, logger, onOutcome } = this.#deps;
    const epoch = recovery.epoch;
    const sentAt = performance.now();
    const timed = (kind: "stage" | "load") =>
      metrics.adapterOpDone(kind, (performance.now() - sentAt) / 1000);
    const failed = (error: unknown) => {
      if (epoch !== recovery.epoch) return;
      if (error instanceof ExecutorRequestError && op.kind === "drop") {
        // The engine has already forgotten the adapter; the executor keeping a copy wastes
        // host memory but breaks nothing.
        logger.warn({ err: error, adapterId: op.adapterId }, "adapter drop refused");
      } else if (error instanceof ExecutorRequestError) {
        logger.warn({ err: error, adapterId: op.adapterId }, "adapter refused");
        // Clients see this message, worded as registration words the adapter rules'
        // (adapter-registry.ts): the adapter's name, never where this host keeps its files.
        const message =
          op.kind === "stage" ? error.reason.replaceAll(op.path, op.name) : error.reason;
        streams.deliver(engine.adapterFailed(op.adapterId, message), AdapterLoadError);
        onOutcome();
      } else {
        this.#lost(error, [...this.#inFlight.values()].flat());
      }
    };
    const settled =
      <T>(after: (reply: T) => void) =>
      (reply: T) => {
        if (epoch !== recovery.epoch) return;
        after(reply);
        onOutcome();
      };
    switch (op.kind) {
      case "stage":
        executor.stageAdapter(op.adapterId, op.path).then(
          settled((staged: StagedAdapter) => {
            timed("stage");
            streams.deliver(engine.adapterStaged(staged), AdapterLoadError);
          }),
          failed,
        );
        return;
      case "load":
        executor.loadAdapter(op.adapterId, op.pages).then(
          settled(() => {
            timed("load");
            engine.adapterLoaded(op.adapterId);
          }),
          failed,
        );
        return;
      case "drop":
        executor.dropAdapter(op.adapterId, op.tier).then(
          settled(() => {}),
          failed,
        );
        return;
    }
  }
}
