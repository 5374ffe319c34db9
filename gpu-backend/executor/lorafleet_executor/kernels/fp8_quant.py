"""Rows of a matrix quantized to float8 e4m3 with one float32 scale per row: activations
per token at every FP8 GEMM, and weights per output channel when a bf16 checkpoint is
quantized at load.

    scale[m] = max(|x[m, :]|, 1e-12) / 448          (448: e4m3's largest finite value)
    q[m, k]  = e4m3(clamp(x[m, k] · (448 / max(|x[m, :]|, 1e-12)), -448, 448))
    x[m, k] ≈ q[m, k] · scale[m]

e4m3 rounds to nearest even, so each element keeps 3 mantissa bits: a relative error of
at most 2^-4, plus the values below 2^-6 · scale that lose precision as subnormals.

`quantize_blocks_reference` does the same per block of weights (block-quantized
checkpoints' layout; tests and benchmarks make such weights with it).

Example:
    q, scale = quantize_rows(x)                       # x bf16 [T, K]
    x_again = q.float() * scale[:, None]              # what the FP8 GEMM computes with
"""

import torch
import triton
import triton.language as tl

from .backend import require_runnable, use_triton
from .checks import require, require_float

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0
MIN_AMAX = 1e-12  # an all-zero row gets a tiny scale instead of a division by zero


def quantize_blocks_reference(
    w: torch.Tensor, block: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] -> q float8_e4m3fn [N, K], scale float32 [ceil(N/bn), ceil(K/bk)]: one
    scale per bn x bk block (the last ones partial), as block-quantized checkpoints hold."""
    (n, k), (bn, bk) = w.shape, block
    nb, kb = -(-n // bn), -(-k // bk)
    padded = torch.zeros(nb * bn, kb * bk, dtype=torch.float32, device=w.device)
    padded[:n, :k] = w.float()
    amax = padded.abs().reshape(nb, bn, kb, bk).amax(dim=(1, 3)).clamp(min=MIN_AMAX)
    full = (FP8_MAX / amax).repeat_interleave(bn, 0)[:n].repeat_interleave(bk, 1)[:, :k]
    q = (w.float() * full).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, amax / FP8_MAX


def quantize_rows_reference(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x32 = x.float()
    amax = x32.abs().amax(dim=1).clamp(min=MIN_AMAX)
    q = (x32 * (FP8_MAX / amax)[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, amax / FP8_MAX


@triton.jit
def quantize_rows_kernel(x_ptr, x_stride, q_ptr, scale_ptr, K: tl.constexpr, BLOCK: tl.constexpr):
    # K is a model width (a few per model): constant, the loops unroll to one pass or two
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    amax = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, K, BLOCK):
        mask = start + cols < K
        x = tl.load(x_ptr + row * x_stride + start + cols, mask=mask, other=0.0)
        amax = tl.maximum(amax, tl.abs(x.to(tl.float32)))
    row_max = tl.maximum(tl.max(amax, axis=0), 1e-12)
    # IEEE divisions (Triton's `/` is approximate), so q and scale are torch's bit for bit
    inverse = tl.math.div_rn(tl.full([1], 448.0, tl.float32), row_max)
    for start in range(0, K, BLOCK):
        mask = start + cols < K
        x = tl.load(x_ptr + row * x_stride + start + cols, mask=mask, other=0.0)
        q = tl.clamp(x.to(tl.float32) * inverse, -448.0, 448.0)
        tl.store(q_ptr + row * K + start + cols, q.to(q_ptr.dtype.element_ty), mask=mask)
    scale = tl.math.div_rn(row_max + tl.zeros([1], tl.float32), tl.full([1], 448.0, tl.float32))
    tl.store(scale_ptr + row + tl.arange(0, 1), scale)


def quantize_rows(x: torch.Tensor, *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] (rows contiguous) -> q float8_e4m3fn [M, K] (contiguous), scale float32 [M]."""
    require_float("x", x, 2)
    require(x.stride(1) == 1, "x's rows must be contiguous")
    if not use_triton(backend, x.device):
        return quantize_rows_reference(x)
    require_runnable(quantize_rows_kernel, x.device)
    num_rows, k = x.shape
    q = torch.empty(num_rows, k, dtype=FP8_DTYPE, device=x.device)
    scale = torch.empty(num_rows, dtype=torch.float32, device=x.device)
    if num_rows:
        block = min(16384, triton.next_power_of_2(k))
        quantize_rows_kernel[(num_rows,)](x, x.stride(0), q, scale, k, BLOCK=block)
    return q, scale
