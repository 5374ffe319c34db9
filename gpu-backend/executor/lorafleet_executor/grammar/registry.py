"""The engine's grammar ids (PROTOCOL.md `compile_grammar`, `drop_grammar`, the step's
`grammar_ids`) bound to compiled grammars.

`compile` binds an id at once (the reader thread, before any later step is read) and
answers through `reply` once: with the compile, or with GrammarTooComplex when it takes
longer than the bound (the compile goes on and is kept for the next time, but this
request is refused). The step thread takes a bound grammar's pristine matcher when a
sequence starts; right after an executor restart the engine sends its compiles again
just before its steps, so that is the one time a step may wait for a compile.

Example:
    registry.compile(7, "regex", "[0-9]+", reply=send_reply)
    pristine = registry.pristine(7)  # for a new sequence of grammar 7
    registry.drop(7)
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future

from ..errors import BadMessage, ExecutorError, GrammarInvalid, GrammarTooComplex
from .cache import Compiled, GrammarCache

Reply = Callable[[Compiled | ExecutorError, bool], None]  # (outcome, cache hit)


class GrammarRegistry:
    def __init__(self, cache: GrammarCache, timeout_s: float) -> None:
        self.cache = cache
        self.timeout_s = timeout_s
        self._bound: dict[int, Future] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bound)

    def compile(self, grammar_id: int, kind: str, source: str, reply: Reply) -> None:
        future, hit = self.cache.get(kind, source)
        with self._lock:
            self._bound[grammar_id] = future
        if future.done() and hit:  # compiled (or refused) before: no bound to wait on
            reply(_outcome(future), hit)
            return
        once = threading.Lock()

        def answer(outcome: Compiled | ExecutorError) -> None:
            if once.acquire(blocking=False):
                timer.cancel()
                reply(outcome, hit)

        too_long = GrammarTooComplex(f"compiling the grammar took longer than {self.timeout_s:g} s")

        def done(finished: Future) -> None:
            # Judged by the compile's own time too, so a compile that ended before this
            # thread looked is refused alike (the grammar stays cached either way).
            outcome = _outcome(finished)
            slow = isinstance(outcome, Compiled) and outcome.compile_ms > self.timeout_s * 1e3
            answer(too_long if slow else outcome)

        timer = threading.Timer(self.timeout_s, answer, [too_long])
        timer.daemon = True
        timer.start()
        future.add_done_callback(done)

    def pristine(self, grammar_id: int) -> Compiled:
        """The bound grammar (waits while it compiles); raises its compile error."""
        with self._lock:
            future = self._bound.get(grammar_id)
        if future is None:
            raise BadMessage(f"grammar {grammar_id} is not compiled (no compile_grammar)")
        outcome = _outcome(future)
        if isinstance(outcome, ExecutorError):
            raise outcome
        return outcome

    def drop(self, grammar_id: int) -> None:
        with self._lock:
            self._bound.pop(grammar_id, None)


def _outcome(future: Future) -> Compiled | ExecutorError:
    try:
        return future.result()
    except ExecutorError as error:
        return error
    except Exception as error:  # a crash in llguidance: this grammar's, not the executor's
        return GrammarInvalid(f"compiling the grammar failed: {type(error).__name__}: {error}")
