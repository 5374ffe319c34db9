// Named errors of the codec: they mirror PROTOCOL.md's `bad_frame` / `bad_message` codes
// (executor/lorafleet_executor/errors.py raises the same names).

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
