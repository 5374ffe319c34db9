"""The bounds every grammar runs under, stated once (README.md "Limits").

llguidance measures its work in fuel, not time; its own speeds (LLParserLimits' doc):
lexer fuel ~50k/ms when a grammar is built, ~14k/ms in a mask step; Earley items ~20k/ms.
So a grammar's build takes at most ~20 ms of lexer work, and one row's mask at most
~7 ms of lexer work plus ~1.5 ms of parser work, whatever the schema: past a bound the
row's matcher fails (that request ends with an error), the other rows go on.
"""

from dataclasses import dataclass

import llguidance

# How many engine-chosen grammar keys stay compiled after their last request (LRU);
# ids in use are held besides.
CACHE_ENTRIES = 256
# Threads that compile (llguidance drops the GIL while it builds a grammar).
COMPILE_THREADS = 2
DEFAULT_COMPILE_TIMEOUT_S = 10.0
DEFAULT_MASK_THREADS = 4

# Our JSON: no free whitespace (a model cannot pad forever), Python's json.dumps separators
# (what models trained on JSON write), and nothing relaxed: keywords llguidance cannot
# enforce and overlapping oneOf branches are refused by name, never approximated.
JSON_OPTIONS = {
    "whitespace_flexible": False,
    "item_separator": ", ",
    "key_separator": ": ",
    "lenient": False,
    "coerce_one_of": False,
}


def parser_limits() -> llguidance.LLParserLimits:
    return llguidance.LLParserLimits(
        max_items_in_row=2_000,
        initial_lexer_fuel=1_000_000,  # building: ~20 ms
        step_lexer_fuel=100_000,  # one row's mask: ~7 ms
        step_max_items=30_000,  # one row's mask: ~1.5 ms
        max_lexer_states=50_000,  # ~1-2 kB each: at most ~100 MB for one grammar
        max_grammar_size=200_000,
        verbose_errors=False,  # errors go to clients: no parser dumps
    )


@dataclass(frozen=True)
class GrammarOptions:
    """The executor's grammar flags (runtime/options.py)."""

    mask_threads: int = DEFAULT_MASK_THREADS  # --grammar-threads: mask fills in parallel
    compile_timeout_s: float = DEFAULT_COMPILE_TIMEOUT_S  # --grammar-compile-timeout-s

    def __post_init__(self) -> None:
        if self.mask_threads < 1:
            raise ValueError(f"--grammar-threads: must be >= 1, got {self.mask_threads}")
        if not self.compile_timeout_s > 0:
            raise ValueError(
                f"--grammar-compile-timeout-s: must be > 0, got {self.compile_timeout_s}"
            )
