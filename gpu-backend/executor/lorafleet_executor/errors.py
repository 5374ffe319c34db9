"""Named errors: each maps to an `error` frame code of PROTOCOL.md."""


class ExecutorError(Exception):
    """An error the engine is told about by name; `code` is PROTOCOL.md's error code."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadFrame(ExecutorError):
    code = "bad_frame"


class BadMessage(ExecutorError):
    code = "bad_message"


class UnknownAdapter(ExecutorError):
    code = "unknown_adapter"


class AdapterInvalid(ExecutorError):
    """An adapter broke one of the shared rules (model/adapter_rules.py); `rule` names it
    (the gateway's error code: api/src/adapter/rules.ts)."""

    code = "adapter_invalid"

    def __init__(self, message: str, rule: str = "adapter_invalid") -> None:
        super().__init__(message)
        self.rule = rule

    def __reduce__(self):  # staging workers send it back to their parent whole
        return (AdapterInvalid, (self.message, self.rule))


class PageOutOfRange(ExecutorError):
    code = "page_out_of_range"


class CapacityExceeded(ExecutorError):
    code = "capacity"


class GrammarInvalid(ExecutorError):
    """A grammar (JSON schema, regex, lark, ...) that does not compile, or uses what the
    grammar engine cannot enforce; the message names it."""

    code = "grammar_invalid"


class GrammarTooComplex(ExecutorError):
    """A grammar past a stated bound: compile time, or llguidance's parser limits."""

    code = "grammar_too_complex"


class ModelInvalid(ExecutorError):
    """The model directory cannot be served: a missing file, an unsupported architecture,
    config field or tensor; the message names it."""

    code = "bad_message"
