"""Step plans built by hand, one row per sequence, for tests and benchmarks that drive the
executor step by step (pipelined steps, recompute, the grammar benchmark) rather than
through the Driver.

Example:
    rows = [PlanRow(5, FLAG_NEW | FLAG_SAMPLE, [3, 4], 0, 2, pages[:4], grammar_id=1)]
    executor.step(step_plan(0, rows))
"""

from dataclasses import dataclass

import numpy as np

from lorafleet_executor.protocol.messages import StepPlan


@dataclass
class PlanRow:
    seq_id: int
    flags: int
    tokens: list[int]  # its new tokens (-1 first with FLAG_USE_LAST_SAMPLED)
    num_cached: int
    num_prompt: int
    kv_pages: np.ndarray  # 2 per new token
    adapter_id: int = -1
    grammar_id: int = -1
    seed: int = -1


def step_plan(
    step_id: int, rows: list[PlanRow], free: list[int] = (), temperature: float = 0.0
) -> StepPlan:
    """A plan of `rows`, all sampled at `temperature` (0: greedy), dropping `free` first."""
    n = len(rows)

    def per_row(name: str, dtype) -> np.ndarray:
        return np.array([getattr(row, name) for row in rows], dtype)

    def full(value, dtype) -> np.ndarray:
        return np.full(n, value, dtype)

    return StepPlan(
        step_id=step_id,
        free_seq_ids=np.array(free, np.uint32),
        seq_ids=per_row("seq_id", np.uint32),
        flags=per_row("flags", np.uint8),
        num_new_tokens=np.array([len(row.tokens) for row in rows], np.int32),
        num_cached=per_row("num_cached", np.int32),
        num_prompt=per_row("num_prompt", np.int32),
        adapter_ids=per_row("adapter_id", np.int32),
        temperature=full(temperature, np.float32),
        top_p=full(1, np.float32),
        top_k=full(0, np.int32),
        min_p=full(0, np.float32),
        presence_penalty=full(0, np.float32),
        frequency_penalty=full(0, np.float32),
        repetition_penalty=full(1, np.float32),
        seed=per_row("seed", np.int64),
        logprobs=full(-1, np.int32),
        token_ids=np.array([t for row in rows for t in row.tokens], np.int32),
        kv_pages=np.concatenate([row.kv_pages for row in rows]).astype(np.int32)
        if rows
        else np.zeros(0, np.int32),
        grammar_ids=per_row("grammar_id", np.int32),
    )
