"""Paged attention and KV writes: Triton kernels vs the torch reference vs dense attention.

On CPU the Triton kernels run in triton's interpreter on a small grid; the full grid
runs on CUDA (marked `gpu`, skipped visibly on CPU).

Tolerances on o, Triton vs reference (fp32 accumulate both; the kernels round the
softmax weights to the model dtype before P @ V, as flash attention does):
    fp32 2e-5 | fp16 atol 4e-3, rtol 1e-2 | bf16 atol 3e-2, rtol 2e-2
"""

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede triton's first import

from lorafleet_executor.kernels import KernelArgumentError, paged_attention, write_kv  # noqa: E402
from lorafleet_executor.kernels.attention_prefill import prefill_kernel  # noqa: E402
from lorafleet_executor.kernels.backend import is_interpreted  # noqa: E402
from lorafleet_executor.kernels.testing import make_paged_kv  # noqa: E402

DEVICE = "cuda" if CUDA else "cpu"
TOL = {  # (atol, rtol)
    torch.float32: (2e-5, 2e-5),
    torch.float16: (4e-3, 1e-2),
    torch.bfloat16: (3e-2, 2e-2),
}


def triton_runs_here() -> None:
    if not CUDA and not is_interpreted(prefill_kernel):
        pytest.skip(
            "triton was imported before TRITON_INTERPRET=1 was set, so its kernels cannot"
            " run on CPU in this process (run the kernel tests in their own process)"
        )


def attention_case(ctx_lens, new, num_kv_heads, group, head_dim, dtype, table_width=None, seed=0):
    kv = make_paged_kv(
        ctx_lens,
        num_kv_heads,
        head_dim,
        table_width=table_width,
        dtype=dtype,
        device=DEVICE,
        seed=seed,
    )
    gen = torch.Generator().manual_seed(seed + 1)
    q = torch.randn(sum(new), num_kv_heads * group, head_dim, generator=gen).to(dtype)
    cu_q = torch.zeros(len(new) + 1, dtype=torch.int32)
    cu_q[1:] = torch.tensor(new).cumsum(0)
    return kv, q.to(DEVICE), cu_q.to(DEVICE)


def dense_attention(q, kv, cu_q, scale) -> torch.Tensor:
    """fp64 causal attention from the dense K/V of each sequence (no pages)."""
    out = torch.empty(q.shape, dtype=torch.float64)
    q, starts = q.cpu().double(), cu_q.tolist()
    for b, (k, v) in enumerate(zip(kv.keys, kv.values, strict=True)):
        group = q.shape[1] // k.shape[1]
        k = k.double().repeat_interleave(group, dim=1)
        v = v.double().repeat_interleave(group, dim=1)
        n, ctx = starts[b + 1] - starts[b], k.shape[0]
        s = torch.einsum("nhd,chd->hnc", q[starts[b] : starts[b + 1]], k) * scale
        causal = torch.arange(ctx)[None, :] <= torch.arange(ctx - n, ctx)[:, None]
        p = s.masked_fill(~causal, float("-inf")).softmax(-1)
        out[starts[b] : starts[b + 1]] = torch.einsum("hnc,chd->nhd", p, v)
    return out


def check_attention(kv, q, cu_q, dtype) -> None:
    scale = q.shape[2] ** -0.5
    args = (q, kv.pool, kv.k_table, kv.v_table, cu_q, kv.ctx_lens, scale)
    ref = paged_attention(*args, backend="torch")
    tri = paged_attention(*args, backend="triton")
    assert tri.dtype == q.dtype and tri.shape == q.shape
    atol, rtol = TOL[dtype]
    torch.testing.assert_close(tri.float(), ref.float(), atol=atol, rtol=rtol)
    dense = dense_attention(q, kv, cu_q, scale).to(dtype).float()
    torch.testing.assert_close(ref.float().cpu(), dense, atol=atol, rtol=rtol)


DECODE_CASES = {  # name: (ctx_lens, num_kv_heads, group, head_dim)
    "b1-mha": ([9], 2, 1, 32),
    "b3-gqa4-long": ([300, 5, 64], 2, 4, 32),  # 300 > one 256-token partition
    "b7-gqa8": ([1, 2, 65, 17, 64, 3, 130], 1, 8, 32),
    "b3-d24": ([40, 7, 1], 2, 2, 24),  # head_dim not a power of 2
}


@pytest.mark.parametrize("case", list(DECODE_CASES))
def test_decode_matches_reference(case):
    triton_runs_here()
    ctx_lens, num_kv_heads, group, head_dim = DECODE_CASES[case]
    kv, q, cu_q = attention_case(
        ctx_lens, [1] * len(ctx_lens), num_kv_heads, group, head_dim, torch.float32, 320
    )
    check_attention(kv, q, cu_q, torch.float32)


PREFILL_CASES = {  # name: (ctx_lens, new tokens, num_kv_heads, group, head_dim)
    "fresh-prompts": ([70, 9], [70, 9], 2, 1, 32),
    "chunked-on-cache": ([130, 20, 66], [66, 3, 1], 1, 4, 32),  # cached prefix + decode row
    "gqa8-d24": ([35, 80], [35, 17], 1, 8, 24),
}


@pytest.mark.parametrize("case", list(PREFILL_CASES))
def test_prefill_matches_reference(case):
    triton_runs_here()
    ctx_lens, new, num_kv_heads, group, head_dim = PREFILL_CASES[case]
    kv, q, cu_q = attention_case(ctx_lens, new, num_kv_heads, group, head_dim, torch.float32)
    check_attention(kv, q, cu_q, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("decode", [True, False], ids=["decode", "prefill"])
def test_half_dtypes_match_reference(dtype, decode):
    triton_runs_here()
    ctx_lens, new = ([33, 270, 4], [1, 1, 1]) if decode else ([33, 70], [33, 5])
    kv, q, cu_q = attention_case(ctx_lens, new, 2, 4, 32, dtype)
    check_attention(kv, q, cu_q, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_write_kv_matches_reference(dtype):
    triton_runs_here()
    gen = torch.Generator().manual_seed(3)
    num_pages, num_tokens, heads, dim = 40, 7, 2, 24
    pages = torch.randperm(num_pages, generator=gen)[: 2 * num_tokens].int().to(DEVICE)
    # k and v as column slices of one fused qkv output: row stride != Hkv * D
    kv = torch.randn(num_tokens, 2 * heads * dim + 5, generator=gen).to(dtype).to(DEVICE)
    k = kv[:, : heads * dim].view(num_tokens, heads, dim)
    v = kv[:, heads * dim : 2 * heads * dim].view(num_tokens, heads, dim)
    pools = []
    for backend in ("torch", "triton"):
        pool = torch.full((num_pages, heads * dim), float("nan"), dtype=dtype, device=DEVICE)
        write_kv(pool, k, v, pages[:num_tokens], pages[num_tokens:], backend=backend)
        pools.append(pool)
    assert torch.equal(pools[0].nan_to_num(7.0), pools[1].nan_to_num(7.0))
    assert torch.equal(pools[1][pages[:num_tokens].long()], k.reshape(num_tokens, -1))
    assert torch.equal(pools[1][pages[num_tokens:].long()], v.reshape(num_tokens, -1))


def test_written_kv_is_what_attention_reads():
    # A step as the model runs it: write this step's K/V, then attend over cache + new.
    triton_runs_here()
    kv, q, cu_q = attention_case([20, 9], [4, 1], 2, 2, 32, torch.float32, seed=5)
    gen = torch.Generator().manual_seed(9)
    k_new = torch.randn(5, 2, 32, generator=gen).to(DEVICE)
    v_new = torch.randn(5, 2, 32, generator=gen).to(DEVICE)
    rows = [(0, p) for p in range(16, 20)] + [(1, 8)]
    k_pages = torch.stack([kv.k_table[b, p] for b, p in rows]).to(torch.int32)
    v_pages = torch.stack([kv.v_table[b, p] for b, p in rows]).to(torch.int32)
    write_kv(kv.pool, k_new, v_new, k_pages, v_pages, backend="triton")
    for i, (b, p) in enumerate(rows):
        kv.keys[b][p], kv.values[b][p] = k_new[i].cpu(), v_new[i].cpu()
    check_attention(kv, q, cu_q, torch.float32)


def test_attention_rejects_bad_arguments():
    kv, q, cu_q = attention_case([10, 4], [3, 4], 2, 2, 16, torch.float32)
    scale = 0.25
    with pytest.raises(KernelArgumentError, match="multiple of Hkv"):
        paged_attention(q[:, :3], kv.pool, kv.k_table, kv.v_table, cu_q, kv.ctx_lens, scale)
    with pytest.raises(KernelArgumentError, match="ctx_lens must count"):
        short = torch.tensor([10, 3], dtype=torch.int32, device=DEVICE)
        paged_attention(q, kv.pool, kv.k_table, kv.v_table, cu_q, short, scale, validate=True)
    with pytest.raises(KernelArgumentError, match="cu_q\\[-1\\]"):
        bad = torch.tensor([0, 3, 6], dtype=torch.int32, device=DEVICE)
        paged_attention(q, kv.pool, kv.k_table, kv.v_table, bad, kv.ctx_lens, scale, validate=True)
    with pytest.raises(KernelArgumentError, match="k_table values must lie in"):
        table = kv.k_table.clone()
        table[1, 0] = kv.pool.shape[0]
        paged_attention(q, kv.pool, table, kv.v_table, cu_q, kv.ctx_lens, scale, validate=True)
    with pytest.raises(KernelArgumentError, match="cu_q must be int32"):
        paged_attention(q, kv.pool, kv.k_table, kv.v_table, cu_q.long(), kv.ctx_lens, scale)
    with pytest.raises(KernelArgumentError, match="pool's dtype"):
        k = torch.zeros(2, 2, 16, dtype=torch.float16, device=DEVICE)
        write_kv(kv.pool, k, k, cu_q[:2], cu_q[1:])


# --- CUDA: the full grid -----------------------------------------------------------------


def random_lens(num_seqs, longest, gen):
    return torch.randint(1, longest + 1, (num_seqs,), generator=gen).tolist()


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("num_seqs", [1, 3, 7, 33])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("decode", [True, False], ids=["decode", "prefill"])
def test_gpu_full_grid(decode, head_dim, num_seqs, group, dtype):
    gen = torch.Generator().manual_seed(num_seqs * 31 + group)
    ctx_lens = random_lens(num_seqs, 2000, gen)
    if decode:
        new = [1] * num_seqs
    else:  # chunked prefill on cached prefixes, mixed with decode rows
        new = [int(torch.randint(1, c + 1, (1,), generator=gen)) for c in ctx_lens]
        new[0] = 1
    kv, q, cu_q = attention_case(ctx_lens, new, 8 // min(group, 8), group, head_dim, dtype)
    check_attention(kv, q, cu_q, dtype)
