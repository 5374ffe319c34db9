/**
 * A request's output constraint refused: a schema that is not a JSON Schema, one the
 * grammar engine cannot enforce or cannot build within its bounds, a tool set whose
 * calls cannot be constrained. A 400 naming `param` (and the schema path in the message).
 */
export class StructuredOutputError extends Error {
  override readonly name = "StructuredOutputError";
  readonly param: string;
  /** invalid_schema | grammar_invalid | grammar_too_complex | unsupported_parameter */
  readonly code: string;
  constructor(message: string, param: string, code: string) {
    super(message);
    this.param = param;
    this.code = code;
  }
}
