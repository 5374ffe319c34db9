"""Tensor parallelism on 2 GPUs (NCCL, Triton kernels): TP=2 generates the tokens of
TP=1 for a mixed-adapter batch. fp32, so that the changed summation order of the
all-reduce stays far below any greedy tie; and an FP8 base (bf16 activations) within
FP8's noise. Skipped (visibly) without 2 CUDA devices."""

import os

import numpy as np
import pytest
import torch
from fixture_skip import require_fixture

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.parallel.group import TensorGroup
from lorafleet_executor.parallel.launch import run_group
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.driver import Driver, Request

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices"),
]

ROOT = fixtures_root(os.environ)
TINY = ROOT / "tiny-llama"
ADAPTERS = ["tiny-r4", "tiny-r8", "tiny-r16", "tiny-r64", "tiny-r16-rslora", "tiny-mix-09"]


def _generate(tp: TensorGroup | None, quantization: str = "auto") -> dict:
    config = InitConfig(
        model_path=str(TINY),
        device="cuda",
        # FP8 runs on bf16 activations; fp32 otherwise, far from greedy ties
        dtype="bfloat16" if quantization == "fp8" else "float32",
        num_pages=8000,
        max_num_seqs=16,
        max_num_batched_tokens=128,
        max_lora_rank=64,
        quantization=quantization,
    )
    executor = Executor(config, tp)
    driver = Driver(executor, chunk_size=16)
    for i, name in enumerate(ADAPTERS):
        driver.add_adapter(10 + i, str(ROOT / "adapters" / name))
    rng = np.random.default_rng(7)
    adapter_ids = [10 + i for i in range(len(ADAPTERS))] + [-1, -1, 10, 13]
    requests = [
        Request(prompt=rng.integers(3, 500, size=int(rng.integers(3, 40))).tolist(),
                adapter_id=a, max_new_tokens=24, logprobs=5)
        for a in adapter_ids
    ]  # fmt: skip
    out = driver.generate(requests)
    return {"tokens": [g.tokens for g in out], "logprobs": [g.logprobs for g in out],
            "fp8": executor.ready_info()["quantization"] == "fp8"}  # fmt: skip


def test_two_gpus_generate_the_tokens_of_one():
    require_fixture(TINY)
    single = _generate(None)
    ranks = run_group(_generate, 2)
    assert ranks[0]["tokens"] == ranks[1]["tokens"] == single["tokens"]
    np.testing.assert_allclose(ranks[0]["logprobs"], single["logprobs"], atol=1e-3)


def test_two_gpus_serve_an_fp8_base_with_adapters_as_one():
    """FP8 weights and their scales split over 2 ranks, a mixed-adapter batch: each rank
    quantizes its own share of o's and down's inputs, so greedy tokens may part at
    near-ties in bf16; most steps agree and logprobs stay within FP8's noise."""
    require_fixture(TINY)
    single = _generate(None, "fp8")
    ranks = run_group(_generate, 2, "fp8")
    assert single["fp8"] and ranks[0]["fp8"] and ranks[1]["fp8"]
    assert ranks[0]["tokens"] == ranks[1]["tokens"]
    same = [a == b for x, y in zip(ranks[0]["tokens"], single["tokens"], strict=True)
            for a, b in zip(x, y, strict=True)]  # fmt: skip
    assert np.mean(same) >= 0.9
    first = [lp[0] for lp in ranks[0]["logprobs"]], [lp[0] for lp in single["logprobs"]]
    np.testing.assert_allclose(*first, atol=0.1)  # the first step: same prompt, same cache
