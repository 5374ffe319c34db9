"""y = x · Wᵀ with W in float8 e4m3 and x quantized per token on the fly (W8A8, dynamic),
on Hopper's FP8 tensor cores: the base projections of an FP8 model.

    xq, sx = quantize_rows(x)                                   # per token, fp8_quant.py
    per channel:  y[m, n] = Σ_k xq[m, k] · Wq[n, k] · sx[m] · sw[n]
    per block:    y[m, n] = sx[m] · Σ_kb sw[n // bn, kb] · Σ_{k in kb} xq[m, k] · Wq[n, k]
                  (sw [ceil(N / bn), ceil(K / bk)], blocks of bn x bk weights, 128 x 128
                  in the checkpoints that use them)

Products of two e4m3 numbers are exact in float32 and the tensor cores accumulate in
float32, so the result differs from the dequantized reference (backend "torch", the CPU
path and the tests' oracle) only by summation order and y's rounding.

Backends: "torch" (the reference: dequantize, then matmul), "scaled_mm"
(`torch._scaled_mm`, cuBLASLt/CUTLASS; per-channel scales only; a weight whose K or N is
not a multiple of 16, which cuBLASLt refuses, goes to the Triton kernel) and "triton"
(`fp8_gemm_kernel`, either kind of scale).

Example:
    y = fp8_linear(x, w_q, w_scale, block=None, backend="scaled_mm")  # x bf16 [T, K]
"""

import functools

import torch
import triton
import triton.language as tl

from .backend import require_runnable
from .checks import require, require_float
from .fp8_quant import FP8_DTYPE, quantize_rows

BACKENDS = ("torch", "scaled_mm", "triton")


def dequantize_weight(
    w_q: torch.Tensor, w_scale: torch.Tensor, block: tuple[int, int] | None
) -> torch.Tensor:
    """float32 [N, K]: each weight times its channel's or its block's scale."""
    n, k = w_q.shape
    scale = w_scale.float()
    if block is None:
        return w_q.float() * scale[:, None]
    bn, bk = block
    full = scale.repeat_interleave(bn, 0)[:n].repeat_interleave(bk, 1)[:, :k]
    return w_q.float() * full


@triton.jit
def fp8_gemm_kernel(
    a_ptr, a_scale_ptr, b_ptr, b_scale_ptr, c_ptr,
    M, N, K: tl.constexpr,  # a model width: constant, so the K loop's trip count is known
    stride_am, stride_bn, stride_cm, stride_scale_n,
    SCALE_BLOCK_N: tl.constexpr,  # 0: one scale per output channel
    SCALE_BLOCK_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):  # fmt: skip
    # Tiles of one group of GROUP_M row tiles run side by side, so a column tile of B
    # (the weight, the bytes that bound a decode step) is read from HBM once and from L2
    # by the other row tiles.
    pid = tl.program_id(0)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    group = pid // (GROUP_M * num_n)
    first_m = group * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * num_n)) % group_size
    pid_n = (pid % (GROUP_M * num_n)) // group_size

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    m_ok = offs_m < M
    n_ok = offs_n < N
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :]
    b_ptrs = b_ptr + offs_n[None, :] * stride_bn + offs_k[:, None]  # [BLOCK_K, BLOCK_N] of Wᵀ
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for step in range(0, tl.cdiv(K, BLOCK_K)):
        k_ok = offs_k < K - step * BLOCK_K
        a = tl.load(a_ptrs, mask=m_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=k_ok[:, None] & n_ok[None, :], other=0.0)
        if SCALE_BLOCK_N == 0:
            acc = tl.dot(a, b, acc)
        else:
            # BLOCK_K divides SCALE_BLOCK_K: the tile lies in one block column
            kb = step * BLOCK_K // SCALE_BLOCK_K
            b_scale = tl.load(
                b_scale_ptr + (offs_n // SCALE_BLOCK_N) * stride_scale_n + kb, mask=n_ok, other=0.0
            )
            acc += tl.dot(a, b) * b_scale[None, :]
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    a_scale = tl.load(a_scale_ptr + offs_m, mask=m_ok, other=0.0)
    acc = acc * a_scale[:, None]
    if SCALE_BLOCK_N == 0:
        acc = acc * tl.load(b_scale_ptr + offs_n, mask=n_ok, other=0.0)[None, :]
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :]
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


@functools.cache
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def gemm_tiles(m: int, n: int, device: torch.device) -> tuple[int, int]:
    """(BLOCK_M, BLOCK_N): the whole batch in one row tile up to 128 rows (decode reads
    the weight once), and column tiles narrow enough that every SM streams a share of
    the weight (a 4096-wide output in 128-wide tiles would keep 32 of 132 SMs busy).

    >>> gemm_tiles(64, 4096, torch.device("cpu"))
    (64, 128)
    """
    block_m = min(128, max(16, triton.next_power_of_2(m)))
    block_n = 128
    if device.type == "cuda":
        sms = _num_sms(device.index if device.index is not None else torch.cuda.current_device())
        row_tiles = triton.cdiv(m, block_m)
        while block_n > 32 and row_tiles * triton.cdiv(n, block_n) < sms:
            block_n //= 2
    return block_m, block_n


def _triton_gemm(x_q, x_scale, w_q, w_scale, block, out_dtype) -> torch.Tensor:
    """fp8_matmul's arguments, checked there."""
    require_runnable(fp8_gemm_kernel, x_q.device)
    (m, k), n = x_q.shape, w_q.shape[0]
    out = torch.empty(m, n, dtype=out_dtype, device=x_q.device)
    if m == 0:
        return out
    block_m, block_n = gemm_tiles(m, n, x_q.device)
    block_k = 128 if block is None or block[1] % 128 == 0 else block[1]
    scale_bn, scale_bk = block or (0, 0)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n),)
    fp8_gemm_kernel[grid](
        x_q, x_scale, w_q, w_scale, out,
        m, n, k,
        x_q.stride(0), w_q.stride(0), out.stride(0), w_scale.stride(0),
        SCALE_BLOCK_N=scale_bn, SCALE_BLOCK_K=scale_bk,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, GROUP_M=8,
        num_warps=8 if block_m == 128 else 4, num_stages=4,
    )  # fmt: skip
    return out


def fp8_linear(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    block: tuple[int, int] | None,
    *,
    backend: str,
) -> torch.Tensor:
    """x [M, K] (bf16 on the GPU) -> x · Wᵀ [M, N] in x's dtype, x quantized per token;
    "torch" is the reference: x quantized and dequantized, times the dequantized weight."""
    require_float("x", x, 2)
    require(backend in BACKENDS, f"fp8 backend must be one of {BACKENDS}, got {backend!r}")
    x_q, x_scale = quantize_rows(
        x.contiguous(), backend="torch" if backend == "torch" else "triton"
    )
    return fp8_matmul(x_q, x_scale, w_q, w_scale, block, x.dtype, backend=backend)


def fp8_matmul(
    x_q: torch.Tensor,
    x_scale: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    block: tuple[int, int] | None,
    out_dtype: torch.dtype,
    *,
    backend: str,
) -> torch.Tensor:
    """x_q float8_e4m3fn [M, K] with x_scale float32 [M] (per token) times w_q
    float8_e4m3fn [N, K] (contiguous) with w_scale float32 [N] (per channel) or
    [ceil(N/bn), ceil(K/bk)] (block) -> [M, N] out_dtype."""
    require(backend in BACKENDS, f"fp8 backend must be one of {BACKENDS}, got {backend!r}")
    for name, t in (("x_q", x_q), ("w_q", w_q)):
        require(t.dtype == FP8_DTYPE and t.dim() == 2, f"{name} must be 2-D {FP8_DTYPE}")
        require(t.is_contiguous(), f"{name} must be contiguous")
    require(x_q.shape[1] == w_q.shape[1], f"x has {x_q.shape[1]} columns, w_q {w_q.shape[1]}")
    require(
        x_scale.dtype == w_scale.dtype == torch.float32,
        f"scales must be float32, got {x_scale.dtype} and {w_scale.dtype}",
    )
    require(tuple(x_scale.shape) == (x_q.shape[0],), "x_scale must be [M]")
    if block is None:
        require(tuple(w_scale.shape) == (w_q.shape[0],), "a per-channel w_scale must be [N]")
    else:
        bn, bk = block
        blocks = (triton.cdiv(w_q.shape[0], bn), triton.cdiv(w_q.shape[1], bk))
        require(tuple(w_scale.shape) == blocks, f"a block w_scale must be {blocks}")
        require(w_scale.stride(1) == 1, "w_scale's rows must be contiguous")
        # a K tile must lie within one block column
        require(bk in (32, 64) or bk % 128 == 0, f"block K size must be 32, 64 or 128·j, got {bk}")
    if backend == "torch":  # the math in float32: dequantized x times the dequantized weight
        x_again = x_q.float() * x_scale[:, None]
        return (x_again @ dequantize_weight(w_q, w_scale, block).T).to(out_dtype)
    if backend == "triton":
        return _triton_gemm(x_q, x_scale, w_q, w_scale, block, out_dtype)
    require(block is None, "scaled_mm takes per-channel scales only (block scales: triton)")
    require(x_q.device.type == "cuda", "scaled_mm runs on CUDA only")
    if w_q.shape[0] % 16 or w_q.shape[1] % 16:  # cuBLASLt's FP8 layout rule: Triton takes the rest
        return _triton_gemm(x_q, x_scale, w_q, w_scale, None, out_dtype)
    if x_q.shape[0] == 0:
        return torch.empty(0, w_q.shape[0], dtype=out_dtype, device=x_q.device)
    return torch._scaled_mm(
        x_q, w_q.t(), scale_a=x_scale[:, None], scale_b=w_scale[None, :], out_dtype=out_dtype
    )
