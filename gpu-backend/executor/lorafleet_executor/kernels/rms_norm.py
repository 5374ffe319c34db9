"""RMSNorm with the residual add fused in (as vLLM's fused_add_rms_norm): one pass over
each hidden row instead of the six elementwise launches of the torch form, which at
decode batch sizes cost more than the bytes they move.

    x = rms_norm(hidden, weight, eps)                      # hidden unchanged
    x = rms_norm(out, weight, eps, residual=hidden)        # hidden += out; x = norm(hidden)

Rounding follows HF's LlamaRMSNorm in half precision: the sum is rounded to the model
dtype, normalised in fp32, rounded, then multiplied by the weight and rounded again.
"""

import torch
import triton
import triton.language as tl

from .backend import require_runnable, use_triton
from .checks import require, require_float
from .triton_common import next_pow2


def rms_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor:
    if residual is not None:
        residual.add_(x)
        x = residual
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


@triton.jit
def rms_norm_kernel(
    x_ptr,
    x_stride,
    res_ptr,
    res_stride,
    w_ptr,
    out_ptr,
    out_stride,
    eps,
    N: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < N
    dtype = out_ptr.dtype.element_ty
    x = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        res = res_ptr + row * res_stride + cols
        x = (tl.load(res, mask=mask, other=0.0).to(tl.float32) + x).to(dtype)
        tl.store(res, x, mask=mask)
        x = x.to(tl.float32)
    inv_rms = tl.rsqrt(tl.sum(x * x, axis=0) / N + eps)
    normed = (x * inv_rms).to(dtype).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * out_stride + cols, (w * normed).to(dtype), mask=mask)


def rms_norm(
    x: torch.Tensor,
    weight: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    *,
    backend: str = "auto",
) -> torch.Tensor:
    """x [T, N] (rows may be strided) -> normalised [T, N]; with `residual` [T, N]
    (contiguous rows), residual += x first, in place, and its new value is normalised."""
    require_float("x", x, 2)
    require(tuple(weight.shape) == (x.shape[1],), f"weight must be [{x.shape[1]}]")
    require(x.stride(1) == 1, "x's rows must be contiguous")
    if residual is not None:
        require(residual.shape == x.shape, f"residual {tuple(residual.shape)} != x")
        require(residual.dtype == x.dtype, "residual and x must share a dtype")
        require(residual.stride(1) == 1, "residual's rows must be contiguous")
    if not use_triton(backend, x.device):
        return rms_norm_reference(x, weight, eps, residual)
    require_runnable(rms_norm_kernel, x.device)
    num_rows, n = x.shape
    out = torch.empty(num_rows, n, dtype=x.dtype, device=x.device)
    if num_rows == 0:
        return out
    res = x if residual is None else residual
    block = next_pow2(n)
    rms_norm_kernel[(num_rows,)](
        x, x.stride(0), res, res.stride(0), weight, out, out.stride(0), eps,
        N=n, HAS_RESIDUAL=residual is not None, BLOCK=block,
        num_warps=min(16, max(1, block // 256)),
    )  # fmt: skip
    return out
