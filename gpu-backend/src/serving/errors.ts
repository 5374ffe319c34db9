// Named errors of the serving layer; the server maps each to an HTTP status and
// OpenAI's error shape (server/openai-error.ts).

/** The queue is at its bound; the client should come back after `retryAfterS`. */
export class QueueFullError extends Error {
  override readonly name = "QueueFullError";
  readonly retryAfterS: number;
  constructor(message: string, retryAfterS: number) {
    super(message);
    this.retryAfterS = retryAfterS;
  }
}

/**
 * One request asks for more completions (prompts × n) than the server ever runs at once:
 * a 400 naming `param`, since a 429 would have the client retry what can never fit.
 */
export class TooManyCompletionsError extends Error {
  override readonly name = "TooManyCompletionsError";
  readonly param: "prompt" | "n";
  constructor(message: string, param: "prompt" | "n") {
    super(message);
    this.param = param;
  }
}

/** `model` names neither the base model nor an adapter this backend knows or can fetch. */
export class UnknownModelError extends Error {
  override readonly name = "UnknownModelError";
}

/** The prompt (plus the tokens asked for) does not fit the model's context. */
export class PromptTooLongError extends Error {
  override readonly name = "PromptTooLongError";
}

/** An adapter could not be fetched, verified or staged (bad files, wrong sha256, rank too high). */
export class AdapterLoadError extends Error {
  override readonly name = "AdapterLoadError";
}

/** The request named adapter URLs this backend may not fetch (SSRF guard); nothing was fetched. */
export class AdapterUrlNotAllowedError extends Error {
  override readonly name = "AdapterUrlNotAllowedError";
}

/** The adapter store could not be reached or failed (timeout, reset, 5xx): worth retrying. */
export class AdapterStoreUnavailableError extends Error {
  override readonly name = "AdapterStoreUnavailableError";
  readonly retriable = true;
}

/** An adapter is still used by requests and cannot be unloaded. */
export class AdapterBusyError extends Error {
  override readonly name = "AdapterBusyError";
}

/** The executor is down or restarting; the request may be retried. */
export class BackendUnavailableError extends Error {
  override readonly name = "BackendUnavailableError";
  readonly retriable = true;
}

/** What requests get once the executor's supervisor has given up (phase "failed"). */
export const EXECUTOR_GAVE_UP =
  "the executor crashed and could not be restarted; retry on another backend";

/**
 * The executor failed on this request's steps twice (hang, crash or step error): the
 * supervisor gave up on it (serving/recovery.ts). A server error, but not one to retry:
 * the same request would fail the same way.
 */
export class ExecutorFailedError extends Error {
  override readonly name = "ExecutorFailedError";
  readonly retriable = false;
}
