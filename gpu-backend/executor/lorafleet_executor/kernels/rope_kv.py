"""RoPE and the KV write in one launch: q is rotated in place inside the fused qkv
output, k is rotated straight into its pool page and v copied into its page, where the
torch form takes about a dozen elementwise launches per layer plus the write.

Rounding follows HF's rotate-half form in half precision (cos/sin cast to the model
dtype, each product rounded, then the sum).
"""

import torch
import triton
import triton.language as tl

from .attention import write_kv
from .backend import require_runnable, use_triton
from .checks import require, require_float, require_int32
from .triton_common import next_pow2


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq, D], k [T, Hkv, D], cos/sin float32 [T, D] -> rotated q, k (input dtype).

    cos/sin are cast to the activations' dtype first, as HF does, so bf16 results match.
    """
    cos = cos.to(q.dtype).unsqueeze(1)
    sin = sin.to(q.dtype).unsqueeze(1)
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def rope_write_kv_reference(
    qkv, positions, cos, sin, pool, k_pages, v_pages, num_heads, num_kv_heads, head_dim
) -> torch.Tensor:
    num_tokens, q_size, kv_size = qkv.shape[0], num_heads * head_dim, num_kv_heads * head_dim
    q, k, v = qkv.split([q_size, kv_size, kv_size], dim=-1)
    q = q.view(num_tokens, num_heads, head_dim)
    q_rotated, k = apply_rope(q, k.view(num_tokens, num_kv_heads, head_dim), cos[positions],
                              sin[positions])  # fmt: skip
    q.copy_(q_rotated)
    v = v.reshape(num_tokens, num_kv_heads, head_dim)
    write_kv(pool, k, v, k_pages, v_pages, backend="torch", validate=False)
    return q


@triton.jit
def _table_half(ptr, i, HALF: tl.constexpr, dtype):
    """[1, HALF_PAD] of a cos/sin row, in the model dtype (as HF casts it) widened again."""
    return tl.load(ptr + i, mask=i < HALF, other=0.0).to(dtype).to(tl.float32)[None, :]


@triton.jit
def _rounded(x, dtype):
    return x.to(dtype).to(tl.float32)


@triton.jit
def rope_write_kv_kernel(
    qkv_ptr,
    qkv_stride,
    positions_ptr,
    cos_ptr,
    sin_ptr,
    table_stride,
    pool_ptr,
    k_pages_ptr,
    v_pages_ptr,
    NUM_HEADS: tl.constexpr,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    HEADS_PAD: tl.constexpr,
    HALF_PAD: tl.constexpr,
):
    t = tl.program_id(0)
    part = tl.program_id(1)  # 0: q, rotated in place; 1: k, rotated into its page; 2: v
    HALF: tl.constexpr = HEAD_DIM // 2
    dtype = qkv_ptr.dtype.element_ty
    h = tl.arange(0, HEADS_PAD)
    i = tl.arange(0, HALF_PAD)
    num_heads = tl.where(part == 0, NUM_HEADS, NUM_KV_HEADS)
    first_col = tl.where(part == 0, 0, (NUM_HEADS + (part - 1) * NUM_KV_HEADS) * HEAD_DIM)
    mask = (h < num_heads)[:, None] & (i < HALF)[None, :]
    offsets = h[:, None] * HEAD_DIM + i[None, :]
    src = qkv_ptr + t * qkv_stride + first_col + offsets
    x1 = tl.load(src, mask=mask, other=0.0)
    x2 = tl.load(src + HALF, mask=mask, other=0.0)
    if part < 2:
        row = tl.load(positions_ptr + t).to(tl.int64) * table_stride
        c1 = _table_half(cos_ptr + row, i, HALF, dtype)
        c2 = _table_half(cos_ptr + row + HALF, i, HALF, dtype)
        s1 = _table_half(sin_ptr + row, i, HALF, dtype)
        s2 = _table_half(sin_ptr + row + HALF, i, HALF, dtype)
        a1, a2 = x1.to(tl.float32), x2.to(tl.float32)
        x1 = (_rounded(a1 * c1, dtype) + _rounded(-a2 * s1, dtype)).to(dtype)
        x2 = (_rounded(a2 * c2, dtype) + _rounded(a1 * s2, dtype)).to(dtype)
    if part == 0:
        tl.store(src, x1, mask=mask)
        tl.store(src + HALF, x2, mask=mask)
    else:
        page = tl.where(part == 1, tl.load(k_pages_ptr + t), tl.load(v_pages_ptr + t))
        dst = pool_ptr + page.to(tl.int64) * (NUM_KV_HEADS * HEAD_DIM) + offsets
        tl.store(dst, x1, mask=mask)
        tl.store(dst + HALF, x2, mask=mask)


def rope_write_kv(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    pool: torch.Tensor,
    k_pages: torch.Tensor,
    v_pages: torch.Tensor,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """Rotates q and k of each token at its position, writes k and v into their pages.

    qkv       [T, (Hq + 2 Hkv) D]   q | k | v, as the fused GEMM writes it; q rotated
                                    in place, k and v left as they were
    positions int64 [T]; cos, sin float32 [max_position, D] (model/rope.py's tables)
    pool      [P, W], W = Hkv D; k_pages, v_pages int32 [T], distinct
    returns   q, a [T, Hq, D] view of qkv
    """
    require_float("qkv", qkv, 2)
    num_tokens = qkv.shape[0]
    width = (num_heads + 2 * num_kv_heads) * head_dim
    require(qkv.shape[1] == width, f"qkv must be [T, {width}], got {tuple(qkv.shape)}")
    require(qkv.stride(1) == 1, "qkv's rows must be contiguous")
    require(head_dim % 2 == 0, f"head_dim must be even, got {head_dim}")
    require(pool.dtype == qkv.dtype, f"pool ({pool.dtype}) and qkv ({qkv.dtype}) dtypes differ")
    require(
        pool.is_contiguous() and pool.shape[1] == num_kv_heads * head_dim, "pool must be [P, Hkv*D]"
    )
    require(cos.shape == sin.shape and cos.shape[1] == head_dim, "cos/sin must be [positions, D]")
    require(cos.is_contiguous() and sin.is_contiguous(), "cos/sin must be contiguous")
    require_int32("k_pages", k_pages, (num_tokens,))
    require_int32("v_pages", v_pages, (num_tokens,))
    require(
        positions.dtype == torch.int64
        and tuple(positions.shape) == (num_tokens,)
        and positions.is_contiguous(),
        f"positions must be contiguous int64 [{num_tokens}]",
    )
    if not use_triton(backend, qkv.device):
        return rope_write_kv_reference(
            qkv, positions, cos, sin, pool, k_pages, v_pages, num_heads, num_kv_heads, head_dim
        )
    require_runnable(rope_write_kv_kernel, qkv.device)
    if num_tokens > 0:
        rope_write_kv_kernel[(num_tokens, 3)](
            qkv, qkv.stride(0), positions, cos, sin, cos.stride(0), pool, k_pages, v_pages,
            NUM_HEADS=num_heads, NUM_KV_HEADS=num_kv_heads, HEAD_DIM=head_dim,
            HEADS_PAD=next_pow2(max(num_heads, num_kv_heads)), HALF_PAD=next_pow2(head_dim // 2),
        )  # fmt: skip
    return qkv[:, : num_heads * head_dim].view(num_tokens, num_heads, head_dim)
