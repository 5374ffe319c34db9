// Named errors of the engine <-> executor link. ProtocolError subclasses mirror
// PROTOCOL.md's `bad_frame` / `bad_message` codes (executor/lorafleet_executor/errors.py
// raises the same names); the rest tell the engine what to do with a failed call.

import type { ExecutorErrorCode } from "./messages.ts";

/** A frame or message that breaks PROTOCOL.md. */
export class ProtocolError extends Error {
  readonly code: "bad_frame" | "bad_message";
  constructor(code: "bad_frame" | "bad_message", message: string) {
    super(message);
    this.code = code;
  }
}

/** The byte stream is out of sync (bad magic, version, length): the connection must close. */
export class BadFrame extends ProtocolError {
  override readonly name = "BadFrame";
  constructor(message: string) {
    super("bad_frame", message);
  }
}

/** The frame is intact but its content breaks the message's schema: answer it, stay connected. */
export class BadMessage extends ProtocolError {
  override readonly name = "BadMessage";
  constructor(message: string) {
    super("bad_message", message);
  }
}

/** The executor answered a request with an `error` frame: the request itself was refused. */
export class ExecutorRequestError extends Error {
  override readonly name = "ExecutorRequestError";
  readonly code: ExecutorErrorCode;
  readonly retriable = false;
  constructor(code: ExecutorErrorCode, message: string) {
    super(`${code}: ${message}`);
    this.code = code;
  }
}

/**
 * The executor is not there to answer (crashed, hung, restarting, shut down). The
 * request may never have run; the engine can re-queue it once the client is ready.
 */
export class ExecutorUnavailable extends Error {
  override readonly name = "ExecutorUnavailable";
  readonly retriable = true;
}
