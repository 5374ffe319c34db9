// The unfinished requests' streams, by request id: where the engine's outputs are
// delivered, what a client's cancel and a failed executor end. Their count is what the
// queue bound counts (admission.ts).
import type { Engine, RequestOutput } from "../engine/index.ts";
import type { GenerationStream } from "./generation-stream.ts";
import type { ServingMetrics } from "./metrics.ts";

interface Held {
  stream: GenerationStream;
  /** what the request holds besides its stream (its grammar), given back when it ends */
  release: () => void;
}

export class RequestStreams {
  readonly #streams = new Map<string, Held>();
  readonly #engine: Engine;
  readonly #metrics: ServingMetrics;

  constructor(engine: Engine, metrics: ServingMetrics) {
    this.#engine = engine;
    this.#metrics = metrics;
  }

  /** unfinished requests */
  get size(): number {
    return this.#streams.size;
  }

  /** Whether request `id` is unfinished. */
  has(id: string): boolean {
    return this.#streams.has(id);
  }

  /** A request the engine has just taken; `release` runs once it ends, however it ends. */
  add(stream: GenerationStream, nowMs: number, release: () => void = () => {}): void {
    this.#streams.set(stream.id, { stream, release });
    this.#metrics.requestAdmitted(stream.id, nowMs);
  }

  /**
   * The engine's outputs to their streams; a request the engine failed ends with
   * `errorKind` (which names what failed: a step, an adapter, the executor).
   */
  deliver(outputs: RequestOutput[], errorKind: new (message: string) => Error): void {
    const now = Date.now();
    for (const output of outputs) {
      const held = this.#streams.get(output.id);
      if (!held) continue;
      const { stream } = held;
      this.#metrics.tokensOut(output.id, output.newTokenIds.length, now);
      if (output.finishReason === "error") {
        stream.fail(new errorKind(output.error ?? "generation failed"));
      } else if (stream.push(output)) {
        // A stop string ended it: the engine still thinks it runs.
        this.#engine.abort(output.id, "stop");
      }
      if (stream.finished) {
        this.#streams.delete(output.id);
        held.release();
        this.#metrics.requestFinished(output.id, output.finishReason ?? "stop");
      }
    }
  }

  /** The client stopped reading: the request ends in the engine too. False if it had ended. */
  cancel(id: string): boolean {
    const held = this.#streams.get(id);
    if (held === undefined) return false;
    this.#streams.delete(id);
    this.#engine.abort(id, "abort");
    held.release();
    this.#metrics.requestFinished(id, "abort");
    return true;
  }

  /** Ends every unfinished request with `error`. */
  failAll(error: Error): void {
    for (const [id, { stream, release }] of this.#streams) {
      this.#engine.abort(id, "abort");
      release();
      stream.fail(error);
      this.#metrics.requestFinished(id, "error");
    }
    this.#streams.clear();
  }
}
