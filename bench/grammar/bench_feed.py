"""Feeding a decode step's tokens to 64 matchers (each its own random JSON schema, the
llama32k tokenizer): one `consume_tokens` call per row, as the executor did, against one
`LLExecutor.consume_token_par` call for the batch, as `grammar/sequence.py` `feed_all` does.
Both follow the same trajectory (a uniformly drawn allowed token per row); the step's
batched mask fill is timed beside them for scale.

usage: python bench_feed.py [STEPS] [THREADS]   (in bench/grammar, as the other scripts)
"""

import json
import sys
import time
from pathlib import Path

import llguidance
import llguidance.torch
import numpy as np
import tokinfo
import torch
from gen_schemas import random_schemas

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "gpu-backend" / "executor"))
from lorafleet_executor.grammar.specs import grammar_text  # noqa: E402

BATCH = 64


def percentiles(seconds: list[float]) -> str:
    us = np.array(seconds) * 1e6
    return f"p50 {np.median(us):.0f} us, p90 {np.percentile(us, 90):.0f} us"


def main(steps: int, threads: int) -> None:
    path, vocab, (eos,) = tokinfo.TOKENIZERS["llama32k"]  # README.md "llama32k"
    tokenizer = llguidance.LLTokenizer(Path(path).read_text(), n_vocab=vocab, eos_token=[eos])
    matchers = [
        llguidance.LLMatcher(tokenizer, grammar_text("json_schema", json.dumps(schema)))
        for schema in random_schemas(BATCH, 0)
    ]
    pool = llguidance.LLExecutor(num_threads=threads)
    bitmask = torch.zeros(BATCH, (vocab + 31) // 32, dtype=torch.int32)
    rng = np.random.default_rng(0)
    fill, one_by_one, together = [], [], []
    for _ in range(steps):
        started = time.perf_counter()
        llguidance.torch.fill_next_token_bitmask_par(
            pool, [(m, row) for row, m in enumerate(matchers)], bitmask
        )
        fill.append(time.perf_counter() - started)
        bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
        tokens = []
        for row in range(BATCH):
            allowed = np.flatnonzero(bits[row, :vocab])
            allowed = allowed[allowed != eos] if len(allowed) > 1 else allowed
            tokens.append(int(rng.choice(allowed)) if len(allowed) else eos)
        copies = [m.deep_copy() for m in matchers]
        started = time.perf_counter()
        for matcher, token in zip(copies, tokens, strict=True):
            matcher.consume_tokens([token])
        one_by_one.append(time.perf_counter() - started)
        started = time.perf_counter()
        pool.consume_token_par(list(zip(matchers, tokens, strict=True)))
        together.append(time.perf_counter() - started)
    print(f"{BATCH} rows, {steps} steps, {threads} threads")
    print(f"mask fill (batched)           {percentiles(fill)}")
    print(f"feed, consume_tokens per row  {percentiles(one_by_one)}")
    print(f"feed, consume_token_par       {percentiles(together)}")


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 60, int(sys.argv[2]) if len(sys.argv) > 2 else 2
    )
