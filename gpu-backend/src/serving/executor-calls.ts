// The loop's "send" and "update": a step plan or adapter op goes to the executor, and
// its outcome comes back to the engine (engine.update, adapterStaged / adapterLoaded /
// adapterFailed, stepFailed) and from there to the streams. A refusal (the executor's
// `error` reply) fails what it concerns; anything else means the executor is lost, which
// recovery.ts handles. Outcomes from before a loss are dropped (recovery's epoch).
import type { Logger } from "pino";
import type { AdapterOp, Engine } from "../engine/index.ts";
import { ExecutorRequestError } from "../executor/errors.ts";
import type { StagedAdapter, StepPlan } from "../protocol/messages.ts";
import { AdapterLoadError, GenerationFailedError } from "./errors.ts";
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

  constructor(deps: ExecutorCallsDeps) {
    this.#deps = deps;
  }

  sendStep(plan: StepPlan): void {
    const { executor, engine, streams, recovery, metrics, logger, onOutcome } = this.#deps;
    const epoch = recovery.epoch;
    const sentAt = performance.now();
    executor.step(plan).then(
      (result) => {
        if (epoch !== recovery.epoch) return;
        // Steps overlap: this one had the executor to itself from the later of its send
        // and the result before it.
        const now = performance.now();
        const wallMs = now - Math.max(sentAt, this.#lastStepResultAt);
        this.#lastStepResultAt = now;
        metrics.stepDone(wallMs, result.forwardMs, result.sampleMs);
        try {
          streams.deliver(engine.update(result, Date.now()), GenerationFailedError);
        } catch (error) {
          // The engine and executor disagree (e.g. StepResultError): a fresh executor and
          // re-queued requests put them back in step.
          recovery.executorLost(error);
        }
        onOutcome();
      },
      (error: unknown) => {
        if (epoch !== recovery.epoch) return;
        if (error instanceof ExecutorRequestError) {
          logger.error({ err: error, stepId: plan.stepId }, "step failed");
          const failed = engine.stepFailed(plan.stepId, error.message);
          streams.deliver(failed, GenerationFailedError);
          onOutcome();
        } else {
          recovery.executorLost(error);
        }
      },
    );
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
        // Clients see this message: name the adapter, not where this host keeps its files.
        const message =
          op.kind === "stage" ? error.message.replaceAll(op.path, op.name) : error.message;
        streams.deliver(engine.adapterFailed(op.adapterId, message), AdapterLoadError);
        onOutcome();
      } else {
        recovery.executorLost(error);
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
