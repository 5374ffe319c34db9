"""Checks of a step plan against PROTOCOL.md and the executor's limits, before any work.

Each failure is a named error: BadMessage (inconsistent plan), CapacityExceeded (over
init's limits), PageOutOfRange, UnknownAdapter (adapter not loaded in the pool).
"""

from dataclasses import dataclass

import numpy as np

from ..errors import BadMessage, CapacityExceeded, PageOutOfRange, UnknownAdapter
from ..model.sampling import MAX_TOP_LOGPROBS
from ..protocol.messages import FLAG_NEW, FLAG_USE_LAST_SAMPLED, StepPlan

PER_SEQ = (
    "seq_ids",
    "flags",
    "num_new_tokens",
    "num_cached",
    "num_prompt",
    "adapter_ids",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "logprobs",
    "grammar_ids",
)


@dataclass(frozen=True)
class StepLimits:
    max_num_seqs: int
    max_num_batched_tokens: int
    max_context: int  # tokens one sequence may hold
    vocab_size: int
    num_pages: int


def check_plan(plan: StepPlan, limits: StepLimits, loaded_adapters: set[int]) -> None:
    num_seqs, num_tokens = plan.num_seqs, plan.num_tokens
    for name in PER_SEQ:
        _require(
            len(getattr(plan, name)) == num_seqs,
            f"{name} has {len(getattr(plan, name))} entries, num_seqs is {num_seqs}",
        )
    _require(
        len(plan.kv_pages) == 2 * num_tokens,
        f"kv_pages has {len(plan.kv_pages)} entries, 2 x num_tokens is {2 * num_tokens}",
    )
    if num_seqs > limits.max_num_seqs:
        raise CapacityExceeded(
            f"{num_seqs} sequences in a step, max_num_seqs is {limits.max_num_seqs}"
        )
    if num_tokens > limits.max_num_batched_tokens:
        raise CapacityExceeded(
            f"{num_tokens} tokens in a step, max_num_batched_tokens is "
            f"{limits.max_num_batched_tokens}"
        )
    _require(len(np.unique(plan.seq_ids)) == num_seqs, "seq_ids repeat a sequence")
    new = plan.num_new_tokens.astype(np.int64)
    _require(bool((new >= 1).all()), "num_new_tokens must be >= 1")
    _require(
        int(new.sum()) == num_tokens,
        f"num_new_tokens sum to {int(new.sum())}, num_tokens is {num_tokens}",
    )
    _require(
        bool((plan.num_cached >= 0).all() and (plan.num_prompt >= 0).all()),
        "num_cached and num_prompt must be >= 0",
    )
    context = plan.num_cached.astype(np.int64) + new
    if num_seqs and int(context.max()) > limits.max_context:
        raise CapacityExceeded(
            f"a sequence reaches {int(context.max())} tokens, "
            f"the executor holds {limits.max_context}"
        )
    _check_tokens(plan, new, limits.vocab_size)
    _check_prefix(plan, limits.vocab_size)
    for name in ("kv_pages", "prefix_kv_pages"):
        pages = getattr(plan, name)
        if len(pages) and (pages.min() < 0 or pages.max() >= limits.num_pages):
            raise PageOutOfRange(
                f"{name} must lie in 0..{limits.num_pages - 1}, found {pages.min()}..{pages.max()}"
            )
    for adapter_id in np.unique(plan.adapter_ids):
        if adapter_id != -1 and int(adapter_id) not in loaded_adapters:
            raise UnknownAdapter(f"adapter {adapter_id} is not loaded in the pool")
    _check_sampling(plan)


def _check_tokens(plan: StepPlan, new: np.ndarray, vocab_size: int) -> None:
    first = np.cumsum(new) - new  # each sequence's first token
    stands_in = np.zeros(plan.num_tokens, bool)
    stands_in[first[(plan.flags & FLAG_USE_LAST_SAMPLED) != 0]] = True
    ids = plan.token_ids
    _require(
        bool((ids[stands_in] == -1).all()),
        "a use_last_sampled sequence's first token_ids entry must be -1",
    )
    real = ids[~stands_in]
    _require(
        bool(((real >= 0) & (real < vocab_size)).all()),
        f"token_ids must lie in 0..{vocab_size - 1}",
    )


def _check_prefix(plan: StepPlan, vocab_size: int) -> None:
    """The cached prefixes of new sequences: num_cached tokens (and 2 pages each) apiece."""
    is_new = (plan.flags & FLAG_NEW) != 0
    expected = int(plan.num_cached[is_new].astype(np.int64).sum())
    _require(
        len(plan.prefix_token_ids) == expected,
        f"prefix_token_ids has {len(plan.prefix_token_ids)} entries, the new sequences' "
        f"num_cached sum to {expected}",
    )
    _require(
        len(plan.prefix_kv_pages) == 2 * expected,
        f"prefix_kv_pages has {len(plan.prefix_kv_pages)} entries, 2 x {expected} expected",
    )
    ids = plan.prefix_token_ids
    _require(
        bool(((ids >= 0) & (ids < vocab_size)).all()),
        f"prefix_token_ids must lie in 0..{vocab_size - 1}",
    )


def _check_sampling(plan: StepPlan) -> None:
    checks = {
        "temperature must be finite and >= 0": np.isfinite(plan.temperature)
        & (plan.temperature >= 0),
        "top_p must lie in (0, 1]": (plan.top_p > 0) & (plan.top_p <= 1),
        "top_k must be >= 0": plan.top_k >= 0,
        "min_p must lie in [0, 1]": (plan.min_p >= 0) & (plan.min_p <= 1),
        "presence_penalty must be finite": np.isfinite(plan.presence_penalty),
        "frequency_penalty must be finite": np.isfinite(plan.frequency_penalty),
        "repetition_penalty must be finite and > 0": np.isfinite(plan.repetition_penalty)
        & (plan.repetition_penalty > 0),
        f"logprobs must lie in -1..{MAX_TOP_LOGPROBS}": (plan.logprobs >= -1)
        & (plan.logprobs <= MAX_TOP_LOGPROBS),
        "seed must be -1 or >= 0": plan.seed >= -1,
        "grammar_ids must be -1 or >= 0": plan.grammar_ids >= -1,
    }
    for message, ok in checks.items():
        _require(bool(np.all(ok)), message)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BadMessage(message)
