"""The grammar subsystem (lorafleet_executor/grammar) on the tiny fixture's tokenizer:
kinds compiled to llguidance grammars, the cache (once per key, bounded, refusals kept,
off the caller's thread), the registry's ids and its compile bound, a sequence's matcher
and the masks of a step."""

import json
import os
import threading
import time

import llguidance
import numpy as np
import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.errors import BadMessage, GrammarInvalid, GrammarTooComplex
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.grammar.cache import GrammarCache
from lorafleet_executor.grammar.masks import GrammarMasks
from lorafleet_executor.grammar.registry import GrammarRegistry
from lorafleet_executor.grammar.sequence import SequenceGrammar, feed_all
from lorafleet_executor.grammar.tokenizer import grammar_tokenizer

TINY = fixtures_root(os.environ) / "tiny-llama"
VOCAB, EOS = 512, 2
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tokenizer():
    require_fixture(TINY)
    return grammar_tokenizer(str(TINY), VOCAB, [EOS])


def cache_of(tokenizer, **kw) -> GrammarCache:
    return GrammarCache(lambda: tokenizer, **kw)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.tokenize_str(text)


def accepts(compiled, tokenizer, text: str) -> bool:
    matcher = compiled.matcher.deep_copy()
    return matcher.consume_tokens(encode(tokenizer, text)) and matcher.is_accepting()


def test_every_kind_compiles_and_means_what_it_says(tokenizer):
    cache = cache_of(tokenizer)
    cases = {
        ("json_schema", json.dumps(PERSON)): ('{"name": "ab", "age": 3}', '{"name":"ab","age":3}'),
        ("regex", "[0-9]{3}-[a-z]{2}"): ("123-ab", "12-ab"),
        ("choice", json.dumps(["yes", "no way"])): ("no way", "nope"),
        ("grammar", 'root ::= "a" ("b" | "c")'): ("ac", "ad"),  # GBNF
        ("grammar", 'start: "x" NUM\nNUM: /[0-9]+/'): ("x42", "x"),  # Lark
        ("lark", 'start: "<tool_call>" %json {"type": "integer"}'): ("<tool_call>7", "7"),
    }
    for (kind, source), (good, bad) in cases.items():
        compiled = cache.get(kind, source)[0].result()
        assert compiled.compile_ms > 0
        assert accepts(compiled, tokenizer, good), (kind, good)
        assert not accepts(compiled, tokenizer, bad), (kind, bad)


def test_our_json_options_win_over_the_schema_own_x_guidance(tokenizer):
    """No free whitespace and json.dumps' separators, whatever the schema asks."""
    relaxed = {**PERSON, "x-guidance": {"whitespace_flexible": True, "lenient": True}}
    compiled = cache_of(tokenizer).get("json_schema", json.dumps(relaxed))[0].result()
    assert not accepts(compiled, tokenizer, '{ "name": "ab", "age": 3 }')
    # lenient would have dropped uniqueItems silently: it is refused by name
    with_keyword = {**relaxed, "properties": {"t": {"type": "array", "uniqueItems": True}}}
    future, _ = cache_of(tokenizer).get("json_schema", json.dumps(with_keyword))
    with pytest.raises(GrammarInvalid, match=r'Unimplemented keys: \["uniqueItems"\]'):
        future.result()


@pytest.mark.parametrize(
    ("kind", "source", "error"),
    [
        ("json_schema", "{not json", "the JSON schema is not JSON"),
        ("json_schema", "[1]", "must be an object"),
        ("json_schema", '{"type": "strng"}', "Invalid type: strng"),
        ("json_schema", '{"oneOf": [{"type": "integer"}, {"type": "number"}]}', "oneOf"),
        ("regex", "a(b", "unclosed group"),
        ("choice", "[]", "non-empty list"),
        ("grammar", "root ::= nowhere", "neither Lark nor GBNF"),
        ("lark", "start: missing", "unknown name"),
    ],
)
def test_a_bad_grammar_is_refused_naming_why(tokenizer, kind, source, error):
    future, _ = cache_of(tokenizer).get(kind, source)
    with pytest.raises(GrammarInvalid, match=error):
        future.result()


def test_compiled_once_per_key_kept_within_the_bound_refusals_kept_too(tokenizer):
    built = []
    cache = GrammarCache(lambda: built.append(1) or tokenizer, entries=2)
    a, hit = cache.get("regex", "a+")
    assert not hit and cache.get("regex", "a+") == (a, True)
    assert cache.get("grammar", "a+")[1] is False  # the kind is part of the key
    bad, _ = cache.get("regex", "(")
    with pytest.raises(GrammarInvalid):
        bad.result()
    assert cache.get("regex", "(") == (bad, True)  # a hostile grammar again: refused at once
    assert cache.get("regex", "a+")[1] is False  # evicted (LRU, 2 entries), compiled again
    assert (cache.hits, cache.misses) == (2, 4) and len(built) == 1


def test_compiles_run_off_the_callers_thread(tokenizer):
    started, release = threading.Event(), threading.Event()

    def slow_tokenizer():
        started.set()
        release.wait(5)
        return tokenizer

    cache = GrammarCache(slow_tokenizer)
    t0 = time.perf_counter()
    future, _ = cache.get("regex", "x")
    assert time.perf_counter() - t0 < 0.5 and not future.done()
    assert started.wait(5)
    release.set()
    assert future.result(timeout=10).matcher is not None


def test_registry_answers_once_refuses_past_the_bound_and_keeps_the_compile(tokenizer):
    release = threading.Event()
    registry = GrammarRegistry(GrammarCache(lambda: release.wait(5) and tokenizer), timeout_s=0.05)
    replies = []
    registry.compile(7, "regex", "[a-z]+", lambda outcome, hit: replies.append((outcome, hit)))
    time.sleep(0.3)
    assert len(replies) == 1 and isinstance(replies[0][0], GrammarTooComplex)
    assert "longer than 0.05 s" in replies[0][0].message
    release.set()
    assert registry.pristine(7).matcher is not None  # the compile went on and is kept
    assert len(replies) == 1  # answered once
    registry.compile(8, "regex", "[a-z]+", lambda outcome, hit: replies.append((outcome, hit)))
    assert replies[1][1] is True and replies[1][0].matcher is not None  # a hit, at once
    registry.drop(7)
    with pytest.raises(BadMessage, match="grammar 7 is not compiled"):
        registry.pristine(7)
    assert len(registry) == 1


def test_a_sequence_feeds_its_tokens_in_order_and_fails_on_a_refused_one(tokenizer):
    registry = GrammarRegistry(cache_of(tokenizer), timeout_s=10)
    registry.compile(1, "choice", '["abc", "abd"]', lambda *_: None)
    grammar = SequenceGrammar.start(1, registry)
    grammar.feed(np.array(encode(tokenizer, "ab"), np.int32))
    assert grammar.consumed == len(encode(tokenizer, "ab")) and not grammar.failed
    grammar.feed(np.array(encode(tokenizer, "x"), np.int32))
    assert grammar.failed and grammar.error
    # a failed compile fails the sequence alone, never the step
    registry.compile(2, "regex", "(", lambda *_: None)
    time.sleep(0.2)
    failed = SequenceGrammar.start(2, registry)
    assert failed.failed and "unclosed" in failed.error
    with pytest.raises(BadMessage):
        SequenceGrammar.start(99, registry)


def test_a_step_feeds_its_rows_at_once_as_it_would_one_by_one(tokenizer):
    registry = GrammarRegistry(cache_of(tokenizer), timeout_s=10)
    registry.compile(1, "json_schema", json.dumps(PERSON), lambda *_: None)
    answer = encode(tokenizer, '{"name": "Al", "age": 42}')
    refused = encode(tokenizer, "x")[0]
    # Per row, what each step brings: decode rows one token a step, a recomputed row its
    # first 4 tokens at once, a row that is refused a token mid-way (then stays failed).
    feeds = [
        [answer[:1], *([t] for t in answer[1:])],
        [answer[:4], *([t] for t in answer[4:])],
        [answer[:1], answer[1:2], [refused], *([t] for t in answer[3:])],
    ]
    steps = max(len(f) for f in feeds)
    one_by_one = [SequenceGrammar.start(1, registry) for _ in feeds]
    together = [SequenceGrammar.start(1, registry) for _ in feeds]
    threads = llguidance.LLExecutor(num_threads=2)
    for step in range(steps):
        rows = [r for r, f in enumerate(feeds) if step < len(f)]
        news = [np.array(feeds[r][step], np.int32) for r in rows]
        for r, new in zip(rows, news, strict=True):
            one_by_one[r].feed(new)
        feed_all([together[r] for r in rows], news, threads)
        for a, b in zip(one_by_one, together, strict=True):
            assert (a.consumed, a.failed, a.error) == (b.consumed, b.failed, b.error)
            if not a.failed:
                assert a.matcher.compute_bitmask() == b.matcher.compute_bitmask()
    assert [g.matcher.is_accepting() for g in together[:2]] == [True, True]
    assert together[2].failed and together[2].consumed == len(answer)


def test_masks_forbid_exactly_what_the_grammar_forbids_and_touch_no_other_row(tokenizer):
    registry = GrammarRegistry(cache_of(tokenizer), timeout_s=10)
    registry.compile(1, "regex", "[0-9]+", lambda *_: None)
    registry.compile(2, "regex", "(", lambda *_: None)
    time.sleep(0.2)
    digits, broken = SequenceGrammar.start(1, registry), SequenceGrammar.start(2, registry)
    masks = GrammarMasks(4, VOCAB, [EOS], torch.device("cpu"), threads=2)
    logits = torch.randn(3, VOCAB)
    before = logits.clone()
    failed = masks.apply(logits, [0, 2], [digits, broken])
    assert failed.tolist() == [0, 1]
    assert torch.equal(logits[1], before[1])  # the free row
    allowed = torch.isfinite(logits[0]).nonzero().flatten().tolist()
    texts = {tokenizer.decode_str([t]) for t in allowed}
    assert texts and all(text.isdigit() for text in texts)
    assert torch.isfinite(logits[2]).nonzero().flatten().tolist() == [EOS]  # it may only end
    assert masks.last_fill_us > 0


def test_the_model_tokenizer_is_read_from_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json is missing"):
        grammar_tokenizer(str(tmp_path), 10, [0])
    require_fixture(TINY)
    assert isinstance(grammar_tokenizer(str(TINY), VOCAB, [EOS]), llguidance.LLTokenizer)
