"""The grammar mask kernel (kernels/token_bitmask.py) against a per-token loop and the torch
reference: Triton's interpreter on CPU, compiled on CUDA (marked `gpu`). Masking is exact:
every id is either left bit for bit or set to -inf, in every dtype."""

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton's first import

from lorafleet_executor.kernels import KernelArgumentError  # noqa: E402
from lorafleet_executor.kernels.backend import is_interpreted  # noqa: E402
from lorafleet_executor.kernels.token_bitmask import (  # noqa: E402
    apply_token_bitmask,
    apply_token_bitmask_kernel,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def triton_runs_here():
    if not CUDA and not is_interpreted(apply_token_bitmask_kernel):
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set in this process")


def loop_reference(logits, bitmask, rows):
    """The module doc's math, one token at a time."""
    out = logits.clone()
    for k, r in enumerate(rows.tolist()):
        for t in range(logits.shape[1]):
            word = t // 32
            allowed = word < bitmask.shape[1] and (int(bitmask[k, word]) >> (t % 32)) & 1
            if not allowed:
                out[r, t] = float("-inf")
    return out


def case(num_rows, vocab, rows, words, seed, dtype, device):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_rows, vocab, generator=gen).to(dtype)
    bits = torch.randint(0, 2, (len(rows), words * 32), generator=gen, dtype=torch.int64)
    weights = (bits.view(len(rows), words, 32) << torch.arange(32)).sum(-1)
    bitmask = weights.to(torch.uint32).view(torch.int32) if hasattr(torch, "uint32") else None
    if bitmask is None:  # torch without uint32: wrap the words into int32 by hand
        bitmask = torch.where(weights >= 2**31, weights - 2**32, weights).to(torch.int32)
    rows_t = torch.tensor(rows, dtype=torch.int32)
    return logits.to(device), bitmask.to(device), rows_t.to(device)


GRID = [
    # (logits rows, vocab, rows with a mask, bitmask words)
    (1, 64, [0], 2),
    (4, 100, [3, 1], 4),  # vocab not a multiple of 32; rows out of order
    (7, 1500, [0, 2, 6], 47),  # several blocks of BLOCK
    (5, 70, [4], 2),  # ids 64..69 lie past the bitmask: disallowed
    (3, 50, [], 2),  # no constrained row: nothing happens
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16", "bf16"])
@pytest.mark.parametrize(("num_rows", "vocab", "rows", "words"), GRID)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_matches_the_loop_exactly(dtype, num_rows, vocab, rows, words, backend):
    logits, bitmask, rows_t = case(num_rows, vocab, rows, words, vocab + len(rows), dtype, "cpu")
    expected = loop_reference(logits, bitmask, rows_t)
    apply_token_bitmask(logits, bitmask, rows_t, backend=backend)
    assert torch.equal(logits, expected)


def test_rows_without_a_mask_are_untouched_bit_for_bit():
    logits, bitmask, rows = case(6, 300, [1, 4], 10, 7, torch.float32, "cpu")
    before = logits.clone()
    apply_token_bitmask(logits, bitmask, rows, backend="triton")
    for free in (0, 2, 3, 5):
        assert torch.equal(logits[free], before[free])


def test_refuses_mismatched_arguments():
    logits = torch.zeros(2, 64)
    with pytest.raises(KernelArgumentError, match="rows for"):
        apply_token_bitmask(
            logits, torch.zeros(2, 2, dtype=torch.int32), torch.zeros(1, dtype=torch.int32)
        )
    with pytest.raises(KernelArgumentError, match="int32"):
        apply_token_bitmask(
            logits, torch.zeros(1, 2, dtype=torch.int64), torch.zeros(1, dtype=torch.int32)
        )


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "fp16", "bf16"])
def test_gpu_kernel_matches_reference_at_llama_vocab(dtype):
    rows = list(range(0, 64, 2))
    logits, bitmask, rows_t = case(64, 32000, rows, 1000, 3, dtype, "cuda")
    expected = logits.clone()
    apply_token_bitmask(expected, bitmask, rows_t, backend="torch")
    apply_token_bitmask(logits, bitmask, rows_t, backend="triton")
    assert torch.equal(logits, expected)
