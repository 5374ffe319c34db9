"""Grammars compiled once per key, on a small thread pool, kept with a bound.

A key is the SHA-256 of (kind, source): the same schema from any tenant is compiled once.
What is kept is a *pristine* matcher (llguidance.LLMatcher before any token); a sequence
takes a copy of it (`deep_copy`, ~2.5 µs). Compiling holds no lock the step thread takes
and llguidance drops the GIL while it builds, so compiles never hold up a step. A failed
compile is kept too: the same hostile schema sent again is refused at once.

Example:
    cache = GrammarCache(lambda: llguidance.LLTokenizer(text, n_vocab=32000, eos_token=[2]))
    future, hit = cache.get("regex", "[a-z]+")
    compiled = future.result()  # Compiled(matcher=<LLMatcher>, compile_ms=0.4)
"""

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import llguidance

from ..errors import ExecutorError, GrammarInvalid, GrammarTooComplex
from .limits import CACHE_ENTRIES, COMPILE_THREADS, parser_limits
from .specs import grammar_text

# llguidance's words for a grammar past its limits (LLParserLimits), as opposed to a wrong one.
_TOO_COMPLEX = re.compile(r"too (many|large|complex)|fuel|limit", re.IGNORECASE)


@dataclass(frozen=True)
class Compiled:
    matcher: llguidance.LLMatcher  # pristine: copy it, never advance it
    compile_ms: float


class GrammarCache:
    def __init__(
        self,
        make_tokenizer: Callable[[], llguidance.LLTokenizer],
        entries: int = CACHE_ENTRIES,
        threads: int = COMPILE_THREADS,
    ) -> None:
        """`make_tokenizer` runs once, on a compile thread, at the first compile (~0.5 s
        for a 50k vocabulary): an executor that never sees a grammar never pays it."""
        self._make_tokenizer = make_tokenizer
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._tokenizer_error: ExecutorError | None = None
        self._tokenizer_lock = threading.Lock()
        self._entries = entries
        self._lock = threading.Lock()
        self._futures: OrderedDict[str, Future] = OrderedDict()  # LRU, newest last
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="grammar-compile")
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(kind: str, source: str) -> str:
        return hashlib.sha256(f"{kind}\0{source}".encode()).hexdigest()

    def get(self, kind: str, source: str) -> tuple[Future, bool]:
        """The compile of (kind, source), started if new; `hit`: it was compiled or compiling."""
        key = self.key(kind, source)
        with self._lock:
            future = self._futures.get(key)
            if future is not None:
                self._futures.move_to_end(key)
                self.hits += 1
                return future, True
            self.misses += 1
            future = self._pool.submit(self._compile, kind, source)
            self._futures[key] = future
            while len(self._futures) > self._entries:
                self._futures.popitem(last=False)  # holders of its future keep what they need
            return future, False

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _compile(self, kind: str, source: str) -> Compiled:
        started = time.perf_counter()
        tokenizer = self._tokenizer_once()
        try:
            text = grammar_text(kind, source)
        except ValueError as error:  # llguidance's own refusal of a schema document
            raise GrammarInvalid(str(error)) from None
        matcher = llguidance.LLMatcher(tokenizer, text, log_level=0, limits=parser_limits())
        if not matcher.is_error():
            # The first mask builds the lexer states of the start: here, not on the step thread.
            matcher.compute_bitmask()
        if matcher.is_error():
            message = matcher.get_error()
            raise (GrammarTooComplex if _TOO_COMPLEX.search(message) else GrammarInvalid)(message)
        return Compiled(matcher, (time.perf_counter() - started) * 1e3)

    def _tokenizer_once(self) -> llguidance.LLTokenizer:
        with self._tokenizer_lock:
            if self._tokenizer is None and self._tokenizer_error is None:
                try:
                    self._tokenizer = self._make_tokenizer()
                except Exception as error:  # a tokenizer llguidance cannot read
                    self._tokenizer_error = GrammarInvalid(
                        f"structured outputs are not available for this model: {error}"
                    )
            if self._tokenizer_error is not None:
                raise self._tokenizer_error
            return self._tokenizer
