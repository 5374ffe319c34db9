// Named errors of a call to the executor: they tell the serving loop what to do with a
// failed call. The codec's own (BadFrame, BadMessage) are in ../protocol/errors.ts.

import type { ExecutorErrorCode } from "../protocol/messages.ts";

/** The executor answered a request with an `error` frame: the request itself was refused. */
export class ExecutorRequestError extends Error {
  override readonly name = "ExecutorRequestError";
  readonly code: ExecutorErrorCode;
  /** the executor's message, without the code */
  readonly reason: string;
  readonly retriable = false;
  constructor(code: ExecutorErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
    this.reason = message;
  }
}

/** Whether the executor refused a grammar (compile_grammar): the request's fault, a 400. */
export function isGrammarRefusal(error: unknown): error is ExecutorRequestError {
  return (
    error instanceof ExecutorRequestError &&
    (error.code === "grammar_invalid" || error.code === "grammar_too_complex")
  );
}

/**
 * The executor is not there to answer (crashed, hung, restarting, shut down). The
 * request may never have run; the engine can re-queue it once the client is ready.
 */
export class ExecutorUnavailable extends Error {
  override readonly name = "ExecutorUnavailable";
  readonly retriable = true;
}
