// Admission: whether a request may enter the engine, decided in one place and from state
// alone (no I/O, no clock): the backend's phase, the unfinished requests, the seats held
// by reservations, the context length. It owns the queue bound and the context length;
// the engine behind it owns placement (pages, adapters) and checks only its own
// invariant, that a request's KV fits the pool, which contextLength() stays within.
// Deadlines are not admission's: a request whose deadline passes while it waits or runs
// is finished by the engine ("deadline"), whenever that happens.
//
//   const admission = new Admission({ maxModelLen: 4096, maxUnfinished: 1152 });
//   admission.checkPromptText(text, tokenizer);          // before tokenizing: 400
//   const seats = admission.reserve(unfinished, 3, "n"); // all n choices or none: 400 / 429
//   const maxTokens = admission.admit("serving", { promptLength: 12, maxTokens: null }, seats);
//   // ... engine.addRequest({ ..., maxTokens }); seats.take(); ... seats.release();
import {
  BackendUnavailableError,
  EXECUTOR_GAVE_UP,
  PromptTooLongError,
  QueueFullError,
  TooManyCompletionsError,
} from "./errors.ts";

/** What the backend is doing, as admission, /health and /ready see it. */
export type Phase =
  /** an executor is up and the loop schedules */
  | "serving"
  /** the executor is lost and its supervisor brings a new one (retriable 503s meanwhile) */
  | "restarting"
  /** the supervisor gave up on the executor: nothing is served any more */
  | "failed"
  /** SIGTERM: the unfinished requests finish, new ones are refused */
  | "draining";

export interface AdmissionLimits {
  /** prompt + completion tokens at most (contextLength()) */
  maxModelLen: number;
  /** unfinished requests (running + waiting) at most: --max-num-seqs + --max-queued-requests */
  maxUnfinished: number;
}

/** Seats under the queue bound held for one client request (Admission.reserve). */
export interface Seats {
  remaining: number;
  take: () => void;
  release: () => void;
}

/** What a prompt text can be measured with before it is tokenized (ModelTokenizer). */
export interface PromptMeasure {
  surelyLongerThan(text: string, maxTokens: number): boolean;
}

/**
 * The context length: --max-model-len (0 = the model's positions), and never more than
 * the model's positions nor the tokens one request's KV may take in the pool
 * (engine.kvTokenCapacity).
 *
 * @example contextLength(0, 2048, 8192) // 2048
 */
export function contextLength(
  configured: number,
  maxPosition: number,
  kvTokenCapacity: number,
): number {
  return Math.min(configured || maxPosition, maxPosition, kvTokenCapacity);
}

export class Admission {
  readonly limits: AdmissionLimits;
  /** seats held by reserve() and not taken yet: counted against the queue bound */
  #reserved = 0;

  constructor(limits: AdmissionLimits) {
    this.limits = limits;
  }

  /**
   * Refuses a prompt text that surely cannot fit the context, before it is tokenized
   * (encoding megabytes would stall every other request).
   */
  checkPromptText(text: string, measure: PromptMeasure): void {
    if (measure.surelyLongerThan(text, this.limits.maxModelLen)) {
      throw new PromptTooLongError(
        `This model's maximum context length is ${this.limits.maxModelLen} tokens. However, your prompt of ${text.length} characters is longer than that. Please reduce the length of the messages or prompt.`,
      );
    }
  }

  /**
   * Holds `count` seats under the queue bound at once, all or none: one client request's
   * n choices × prompts. Without it, concurrent multi-choice requests each got part of
   * the room and then all failed (100 batch lines × n=16 against a bound of 1152: every
   * line 429). More than the bound itself is a 400 naming `param`.
   */
  reserve(unfinished: number, count: number, param: "prompt" | "n"): Seats {
    const { maxUnfinished } = this.limits;
    if (count > maxUnfinished) {
      throw new TooManyCompletionsError(
        `this request asks for ${count} completions (prompts × n); this server runs at most ${maxUnfinished} at once`,
        param,
      );
    }
    const held = unfinished + this.#reserved;
    if (held + count > maxUnfinished) {
      throw new QueueFullError(
        `The server has ${held} requests in progress and room for ${maxUnfinished}; this one needs ${count}. Retry later.`,
        1,
      );
    }
    this.#reserved += count;
    const seats = {
      remaining: count,
      take: () => {
        seats.remaining--;
        this.#reserved--;
      },
      release: () => {
        this.#reserved -= seats.remaining;
        seats.remaining = 0;
      },
    };
    return seats;
  }

  /**
   * Whether one request of a reservation may enter the engine now; returns the completion
   * tokens it may have (`maxTokens`, or all the room the context leaves when null). Throws
   * BackendUnavailableError (503: not serving) or PromptTooLongError (400).
   */
  admit(
    phase: Phase,
    request: { promptLength: number; maxTokens: number | null },
    seats: Seats,
  ): number {
    if (phase === "draining") {
      throw new BackendUnavailableError("this backend is shutting down; retry on another");
    }
    if (phase === "restarting") {
      throw new BackendUnavailableError("the executor is restarting; retry shortly");
    }
    if (phase === "failed") {
      throw new BackendUnavailableError(EXECUTOR_GAVE_UP);
    }
    const { maxModelLen } = this.limits;
    const { promptLength, maxTokens } = request;
    const room = maxModelLen - promptLength;
    if (room < 1 || (maxTokens !== null && maxTokens > room)) {
      throw new PromptTooLongError(
        `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${promptLength + (maxTokens ?? 1)} tokens (${promptLength} in the messages, ${maxTokens ?? 1} in the completion). Please reduce the length of the messages or completion.`,
      );
    }
    if (seats.remaining < 1) throw new Error("admit: no reserved seat left");
    return maxTokens ?? room;
  }
}
