"""One sequence's grammar state: its own matcher (a copy of the grammar's pristine one)
and how many of the sequence's output tokens it has consumed.

The matcher must see the output tokens in order, each once. Steps may be launched before
the samples of the step before are read (step/launched.py), so a token is consumed only
when the next mask is needed: the executor then feeds every output token after the
`consumed` first ones. The same call replays a recomputed sequence (preemption, an
executor restart: it starts as a new sequence whose prompt carries its earlier output),
so its matcher comes back to where it was. n > 1 needs nothing more: each choice is a
sequence with its own copy.

A matcher that fails (a token it refuses, llguidance's per-step limits) stays failed:
its row may only end (the mask allows only EOS) and the step result says it failed.

A step feeds all its constrained rows at once (`feed_all`): a decode row's one new token
goes with the others' into one call on llguidance's thread pool (64 rows: ~0.2 ms against
~1.5 ms one by one, on 2 cores; bench/grammar/README.md "Feeding a step").

Example:
    grammar = SequenceGrammar.start(7, registry)
    grammar.feed(outputs[grammar.consumed :])  # the output tokens it has not seen, in order
"""

import llguidance
import numpy as np

from ..errors import ExecutorError
from .registry import GrammarRegistry


class SequenceGrammar:
    def __init__(self, grammar_id: int, matcher: llguidance.LLMatcher | None, error: str) -> None:
        self.grammar_id = grammar_id
        self.matcher = matcher
        self.error = error  # "" while it works
        self.consumed = 0  # output tokens fed to the matcher

    @classmethod
    def start(cls, grammar_id: int, registry: GrammarRegistry) -> "SequenceGrammar":
        """A fresh matcher for grammar `grammar_id`; a grammar that failed to compile (only
        possible for a compile resent after a restart) fails this sequence alone."""
        try:
            compiled = registry.pristine(grammar_id)
        except ExecutorError as error:
            if error.code == "bad_message":
                raise  # an id the engine never bound: the plan is wrong
            return cls(grammar_id, None, error.message)
        return cls(grammar_id, compiled.matcher.deep_copy(), "")

    @property
    def failed(self) -> bool:
        return self.matcher is None or self.error != ""

    def feed(self, new: np.ndarray) -> None:
        """The sequence's next output tokens (after the `consumed` first ones), in order."""
        self.consumed += len(new)
        if self.failed or len(new) == 0:
            return
        if not self.matcher.consume_tokens(new.tolist()):
            self._refused()

    def _refused(self) -> None:
        self.error = self.matcher.get_error() or "the grammar refused a token"

    def check(self) -> None:
        """Notes a failure the last mask fill ran into (a per-step limit)."""
        if not self.failed and self.matcher.is_error():
            self.error = self.matcher.get_error() or "the grammar failed"


def feed_all(
    grammars: list[SequenceGrammar], news: list[np.ndarray], threads: llguidance.LLExecutor
) -> None:
    """`grammar.feed(new)` for each pair; the single new tokens of live matchers (decode
    rows) are consumed in one parallel call on `threads`."""
    single: list[SequenceGrammar] = []
    pairs: list[tuple[llguidance.LLMatcher, int]] = []
    for grammar, new in zip(grammars, news, strict=True):
        if len(new) == 1 and not grammar.failed:
            grammar.consumed += 1
            single.append(grammar)
            pairs.append((grammar.matcher, int(new[0])))
        else:
            grammar.feed(new)
    if pairs:
        for grammar, accepted in zip(single, threads.consume_token_par(pairs), strict=True):
            if not accepted:
                grammar._refused()
