"""Structured outputs in the executor, on the tiny model with LoRA adapters (fp32, CPU):
constrained rows always follow their grammar; free rows in the same batch get exactly the
tokens they get alone; steps launched before the last one is read, n > 1, seeds,
logprobs of the masked distribution, max_tokens mid-object, recompute after preemption,
a failed grammar ending its row alone, and no mask work for steps without grammars."""

import json
import os
import threading
from dataclasses import replace

import numpy as np
import pytest
from fixture_skip import require_fixture

from lorafleet_executor.errors import BadMessage
from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.protocol import messages
from lorafleet_executor.protocol.messages import FLAG_NEW, FLAG_SAMPLE, FLAG_USE_LAST_SAMPLED
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request
from lorafleet_reference.plans import PlanRow, step_plan

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ["tiny-r4", "tiny-r8", "tiny-r16-rslora"]
EOS = 2
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
PROMPTS = [[5, 17, 42, 9], [7, 8, 9], [11, 3, 60, 61, 62], [20, 21]]


@pytest.fixture(scope="module")
def driver():
    require_fixture(TINY)
    ex = Executor(
        messages.InitConfig(
            model_path=str(TINY), num_pages=6000, max_num_seqs=16, max_num_batched_tokens=256
        )
    )
    driver = Driver(ex)
    for i, name in enumerate(ADAPTERS):
        driver.add_adapter(i, str(ROOT / "adapters" / name))
    yield driver
    ex.close()


@pytest.fixture
def executor(driver):
    return driver.executor


def compile_grammar(ex, grammar_id: int, kind: str, source: str):
    done, out = threading.Event(), []
    ex.compile_grammar(
        grammar_id, kind, source, lambda outcome, hit: (out.append(outcome), done.set())
    )
    assert done.wait(30)
    return out[0]


def text_of(tokens: list[int]) -> str:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TINY / "tokenizer.json"))
    return tokenizer.decode([t for t in tokens if t != EOS], skip_special_tokens=False)


def test_constrained_rows_follow_their_grammars_beside_free_rows_on_other_adapters(
    driver, executor
):
    compile_grammar(executor, 1, "json_schema", json.dumps(PERSON))
    compile_grammar(executor, 2, "regex", "[0-9]{2}-[a-z]{3}")
    # (prompt, adapter, grammar, max new tokens, temperature, seed)
    table = [
        (PROMPTS[0], 0, 1, 80, 1.0, 1),
        (PROMPTS[1], 1, -1, 24, 0.0, -1),
        (PROMPTS[2], 2, 2, 40, 0.8, 2),
        (PROMPTS[3], -1, -1, 24, 0.0, -1),
        (PROMPTS[1], 2, 1, 80, 0.0, -1),
    ]
    requests = [
        Request(prompt=p, adapter_id=a, grammar_id=g, max_new_tokens=n, temperature=t, seed=s)
        for p, a, g, n, t, s in table
    ]
    together = driver.generate(requests)
    person = json.loads(text_of(together[0].tokens))
    assert set(person) == {"name", "age", "tags"} and 0 <= person["age"] <= 120
    assert len(person["name"]) <= 8 and set(person["tags"]) <= {"a", "b"}
    assert json.loads(text_of(together[4].tokens))["age"] in range(121)
    code = text_of(together[2].tokens)
    assert len(code) == 6 and code[:2].isdigit() and code[2] == "-" and code[3:].isalpha()
    for i in (0, 2, 4):
        assert together[i].tokens[-1] == EOS and not together[i].grammar_failed
    # No leakage: each free row, alone, samples exactly the same tokens (fp32, greedy).
    for i in (1, 3):
        alone = driver.generate([requests[i]])[0]
        assert alone.tokens == together[i].tokens


def test_logprobs_are_of_the_masked_distribution(driver, executor):
    compile_grammar(executor, 3, "choice", json.dumps(["yes", "no"]))
    out = driver.generate([Request(prompt=PROMPTS[0], grammar_id=3, max_new_tokens=6, logprobs=5)])[
        0
    ]
    first = out.top[0]
    # Only the tokens that can start "yes" or "no" are alternatives, and they hold all the mass.
    assert 1 <= len(first) < 5
    assert all("yes".startswith(text_of([t])) or "no".startswith(text_of([t])) for t in first)
    assert np.isclose(sum(np.exp(list(first.values()))), 1.0, atol=1e-5)
    assert out.logprobs[0] == pytest.approx(first[out.tokens[0]])
    assert text_of(out.tokens) in ("yes", "no")


def test_seeded_rows_sample_the_same_whatever_the_batch(driver, executor):
    compile_grammar(executor, 4, "json_schema", json.dumps(PERSON))
    row = Request(
        prompt=PROMPTS[2], adapter_id=1, grammar_id=4, max_new_tokens=60, temperature=1.0, seed=7
    )
    alone = driver.generate([row])[0]
    crowd = [replace(row, seed=s, adapter_id=s % 3 - 1) for s in range(8, 13)]
    together = driver.generate([*crowd, row])
    assert together[-1].tokens == alone.tokens
    # n > 1: choices of one request (one grammar, seeds seed + i) each follow it on their own
    texts = {text_of(g.tokens) for g in together}
    assert len(texts) > 1 and all(isinstance(json.loads(t), dict) for t in texts)


def test_max_tokens_mid_object_leaves_a_prefix_of_a_valid_answer(driver, executor):
    compile_grammar(executor, 5, "json_schema", json.dumps(PERSON))
    full = driver.generate([Request(prompt=PROMPTS[0], grammar_id=5, max_new_tokens=80)])[0]
    cut = driver.generate([Request(prompt=PROMPTS[0], grammar_id=5, max_new_tokens=5)])[0]
    assert len(cut.tokens) == 5 and cut.tokens == full.tokens[:5]
    assert EOS not in cut.tokens and not cut.grammar_failed


def plan(step_id, rows, free=()):
    """rows: (seq_id, flags, tokens, num_cached, num_prompt, KV pages, grammar_id)."""
    return step_plan(step_id, [PlanRow(*r[:6], grammar_id=r[6]) for r in rows], free)


NEW = FLAG_NEW | FLAG_SAMPLE
NEXT = FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED


def decode(driver, seq_id, prompt, grammar_id, steps, ahead):
    """Greedy decode of one constrained seq beside a free one, `ahead` steps launched
    before the oldest is read (the engine's steps in flight)."""
    ex, held = driver.executor, []

    def pages(n):
        held.append(driver.pages.allocate(2 * n))
        return held[-1]

    first = plan(0, [(seq_id, NEW, prompt, 0, len(prompt), pages(len(prompt)), grammar_id),
                     (seq_id + 1, NEW, [9, 9], 0, 2, pages(2), -1)])  # fmt: skip
    launched, tokens = [ex.launch(first)], []
    for k in range(1, steps):
        rows = [(seq_id, NEXT, [-1], len(prompt) + k - 1, len(prompt), pages(1), grammar_id),
                (seq_id + 1, NEXT, [-1], 2 + k - 1, 2, pages(1), -1)]  # fmt: skip
        launched.append(ex.launch(plan(k, rows)))
        while len(launched) > ahead:
            tokens.append(launched.pop(0).wait().tokens.tolist())
    tokens += [step.wait().tokens.tolist() for step in launched]
    ex.step(plan(steps, [], free=[seq_id, seq_id + 1]))
    for block in held:
        driver.pages.free(block)
    return tokens


def test_steps_launched_ahead_feed_each_matcher_its_tokens_in_order(driver, executor):
    compile_grammar(executor, 6, "json_schema", json.dumps(PERSON))
    one_by_one = decode(driver, 100, PROMPTS[0], 6, 14, ahead=1)
    for ahead in (2, 3):
        assert decode(driver, 200 + ahead, PROMPTS[0], 6, 14, ahead=ahead) == one_by_one
    constrained = [row[0] for row in one_by_one]
    assert text_of(constrained).startswith('{"name": "')


def test_a_recomputed_sequence_replays_its_output_into_a_fresh_matcher(driver, executor):
    """Preemption by recompute: the engine restarts the request as a new sequence whose
    prompt carries its output so far; the matcher is rebuilt by replaying it."""
    compile_grammar(executor, 7, "json_schema", json.dumps(PERSON))
    straight = driver.generate([Request(prompt=PROMPTS[3], grammar_id=7, max_new_tokens=80)])[
        0
    ].tokens
    cut = 9
    prompt = PROMPTS[3] + straight[:cut]  # what the engine's sequence holds
    pages = driver.pages.allocate(2 * len(straight) + 2 * len(PROMPTS[3]))
    rows = [(300, NEW, prompt, 0, len(PROMPTS[3]), pages[: 2 * len(prompt)], 7)]
    tokens = [int(executor.step(plan(0, rows)).tokens[0])]
    at = len(prompt)
    while tokens[-1] != EOS:
        row = (300, NEXT, [-1], at, len(PROMPTS[3]), pages[2 * at : 2 * at + 2], 7)
        tokens.append(int(executor.step(plan(len(tokens), [row])).tokens[0]))
        at += 1
    executor.step(plan(999, [], free=[300]))
    driver.pages.free(pages)
    assert straight[:cut] + tokens == straight


def test_a_failed_grammar_ends_its_row_alone(driver, executor):
    failed = compile_grammar(executor, 8, "regex", "(unclosed")
    assert failed.code == "grammar_invalid"
    pages = driver.pages.allocate(10)
    result = executor.step(
        plan(0, [(400, NEW, [5, 6], 0, 2, pages[:4], 8), (401, NEW, [5, 6], 0, 2, pages[4:8], -1)])
    )
    assert result.grammar_errors.tolist() == [1, 0]
    assert int(result.tokens[0]) == EOS
    executor.step(plan(1, [], free=[400, 401]))
    with pytest.raises(BadMessage, match="grammar 12345 is not compiled"):
        executor.step(plan(2, [(402, NEW, [5], 0, 1, pages[8:], 12345)]))
    driver.pages.free(pages)


def test_a_sequence_keeps_the_grammar_it_started_with(driver, executor):
    compile_grammar(executor, 9, "regex", "[a-z]+")
    pages = driver.pages.allocate(6)
    executor.step(plan(0, [(500, NEW, [5, 6], 0, 2, pages[:4], 9)]))
    with pytest.raises(BadMessage, match="started with grammar 9, the plan says -1"):
        executor.step(plan(1, [(500, NEXT, [-1], 2, 2, pages[4:], -1)]))
    executor.step(plan(2, [], free=[500]))
    driver.pages.free(pages)


def test_steps_without_grammars_do_no_mask_work():
    require_fixture(TINY)
    ex = Executor(
        messages.InitConfig(
            model_path=str(TINY), num_pages=400, max_num_seqs=4, max_num_batched_tokens=32
        )
    )
    Driver(ex).generate([Request(prompt=PROMPTS[0], max_new_tokens=4)])
    assert ex.grammar_masks is None
    ex.close()
