"""RMSNorm (+ residual), RoPE + KV write and SwiGLU: Triton kernels vs their torch
references on random shapes (Triton's interpreter on CPU; Llama shapes on CUDA, marked
`gpu`). The kernels round where the torch forms round, so half precision differs by at
most an ulp or so (rsqrt/exp implementations): fp32 1e-5, fp16 2e-3, bf16 1.6e-2."""

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton's first import

from lorafleet_executor.kernels import KernelArgumentError  # noqa: E402
from lorafleet_executor.kernels.backend import is_interpreted  # noqa: E402
from lorafleet_executor.kernels.rms_norm import rms_norm, rms_norm_kernel  # noqa: E402
from lorafleet_executor.kernels.rope_kv import rope_write_kv  # noqa: E402
from lorafleet_executor.kernels.silu_mul import silu_mul  # noqa: E402
from lorafleet_executor.model.config import RopeConfig  # noqa: E402
from lorafleet_executor.model.rope import rope_tables  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
DTYPE_IDS = ["fp32", "fp16", "bf16"]


@pytest.fixture(autouse=True)
def triton_runs_here():
    if not CUDA and not is_interpreted(rms_norm_kernel):
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set in this process")


def close(actual, expected, dtype):
    torch.testing.assert_close(actual.float(), expected.float(), atol=TOL[dtype], rtol=TOL[dtype])


def randn(*shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(dtype).to(DEVICE)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("rows", "width"), [(1, 64), (5, 96), (17, 200)])
@pytest.mark.parametrize("with_residual", [False, True], ids=["norm", "add-norm"])
def test_rms_norm_matches_reference(dtype, rows, width, with_residual):
    x = randn(rows, width + 8, dtype=dtype, seed=rows)[:, :width]  # strided rows
    weight = randn(width, dtype=dtype, seed=2) * 0.5 + 1
    residual = randn(rows, width, dtype=dtype, seed=3) if with_residual else None
    results = []
    for backend in ("torch", "triton"):
        res = None if residual is None else residual.clone()
        out = rms_norm(x, weight, 1e-5, residual=res, backend=backend)
        results.append((out, res))
    (ref, ref_res), (out, res) = results
    close(out, ref, dtype)
    if with_residual:  # one rounding in both (the interpreter truncates to bf16: not equal)
        close(res, ref_res, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(("rows", "width"), [(1, 16), (6, 1100)])
def test_silu_mul_matches_reference(dtype, rows, width):
    gate_up = randn(rows, 2 * width, dtype=dtype, seed=width) * 3
    close(silu_mul(gate_up, backend="triton"), silu_mul(gate_up, backend="torch"), dtype)


def rope_case(num_heads, num_kv_heads, head_dim, num_tokens, dtype, seed):
    width = (num_heads + 2 * num_kv_heads) * head_dim
    qkv = randn(num_tokens, width, dtype=dtype, seed=seed)
    cos, sin = rope_tables(RopeConfig(theta=10000.0, kind="default"), head_dim, 4096, DEVICE)
    gen = torch.Generator().manual_seed(seed)
    positions = torch.randint(0, 4096, (num_tokens,), generator=gen).to(DEVICE)
    pages = torch.randperm(3 * num_tokens, generator=gen)[: 2 * num_tokens].int().to(DEVICE)
    pool = randn(3 * num_tokens, num_kv_heads * head_dim, dtype=dtype, seed=seed + 1)
    return qkv, positions, cos, sin, pool, pages[:num_tokens], pages[num_tokens:]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize(
    ("num_heads", "num_kv_heads", "head_dim", "num_tokens"),
    [(4, 4, 16, 3), (6, 2, 32, 7), (3, 1, 24, 1)],  # MHA, GQA, heads and D not powers of 2
)
def test_rope_write_kv_matches_reference(dtype, num_heads, num_kv_heads, head_dim, num_tokens):
    qkv, positions, cos, sin, pool, k_pages, v_pages = rope_case(
        num_heads, num_kv_heads, head_dim, num_tokens, dtype, seed=num_tokens
    )
    results = []
    for backend in ("torch", "triton"):
        q_in, pool_in = qkv.clone(), pool.clone()
        q = rope_write_kv(q_in, positions, cos, sin, pool_in, k_pages, v_pages, num_heads,
                          num_kv_heads, head_dim, backend=backend)  # fmt: skip
        assert q.shape == (num_tokens, num_heads, head_dim)
        assert q.data_ptr() == q_in.data_ptr(), "q is rotated in place"
        results.append((q_in, pool_in))
    (ref_qkv, ref_pool), (qkv_out, pool_out) = results
    close(qkv_out, ref_qkv, dtype)
    q_size = num_heads * head_dim
    assert torch.equal(qkv_out[:, q_size:], qkv[:, q_size:]), "k and v stay as they were"
    close(pool_out, ref_pool, dtype)
    v = qkv[:, q_size + num_kv_heads * head_dim :]
    assert torch.equal(pool_out[v_pages.long()], v), "v is copied exactly"
    untouched = torch.ones(pool.shape[0], dtype=torch.bool, device=DEVICE)
    untouched[k_pages.long()] = untouched[v_pages.long()] = False
    assert torch.equal(pool_out[untouched], pool[untouched]), "no other page is written"


def test_bad_arguments_are_named():
    x = torch.randn(2, 8, device=DEVICE)
    with pytest.raises(KernelArgumentError, match="weight must be"):
        rms_norm(x, torch.ones(7, device=DEVICE), 1e-5)
    with pytest.raises(KernelArgumentError, match="width must be even"):
        silu_mul(torch.randn(2, 7, device=DEVICE))
    qkv, positions, cos, sin, pool, k_pages, v_pages = rope_case(4, 2, 16, 3, torch.float32, 0)
    with pytest.raises(KernelArgumentError, match="qkv must be"):
        rope_write_kv(qkv, positions, cos, sin, pool, k_pages, v_pages, 4, 4, 16)
    with pytest.raises(KernelArgumentError, match="positions must be"):
        rope_write_kv(qkv, positions.int(), cos, sin, pool, k_pages, v_pages, 4, 2, 16)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("shape", ["llama-2-7b", "llama-3-8b"])
def test_gpu_llama_shapes(dtype, shape):
    heads, kv_heads, hidden, inter = {"llama-2-7b": (32, 32, 4096, 11008),
                                      "llama-3-8b": (32, 8, 4096, 14336)}[shape]  # fmt: skip
    for rows in (1, 64, 333):
        x, residual = (
            randn(rows, hidden, dtype=dtype, seed=1),
            randn(rows, hidden, dtype=dtype, seed=2),
        )
        weight = randn(hidden, dtype=dtype, seed=3)
        r_ref, r_tri = residual.clone(), residual.clone()
        ref = rms_norm(x, weight, 1e-5, residual=r_ref, backend="torch")
        close(rms_norm(x, weight, 1e-5, residual=r_tri, backend="triton"), ref, dtype)
        gate_up = randn(rows, 2 * inter, dtype=dtype, seed=4)
        close(silu_mul(gate_up, backend="triton"), silu_mul(gate_up, backend="torch"), dtype)
        case = rope_case(heads, kv_heads, 128, rows, dtype, seed=rows)
        outs = []
        for backend in ("torch", "triton"):
            qkv, pool = case[0].clone(), case[4].clone()
            rope_write_kv(qkv, case[1], case[2], case[3], pool, case[5], case[6], heads,
                          kv_heads, 128, backend=backend)  # fmt: skip
            outs.append((qkv, pool))
        close(outs[1][0], outs[0][0], dtype)
        close(outs[1][1], outs[0][1], dtype)
