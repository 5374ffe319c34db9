"""SwiGLU's activation, silu(gate) * up, in one launch from the fused gate_up output.

Rounding follows the torch form in half precision (silu rounded to the model dtype,
then the product rounded).
"""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from .backend import require_runnable, use_triton
from .checks import require, require_float


def silu_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@triton.jit
def silu_mul_kernel(gate_up_ptr, gate_up_stride, out_ptr, out_stride, N, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    dtype = out_ptr.dtype.element_ty
    gate = tl.load(gate_up_ptr + row * gate_up_stride + cols, mask=mask, other=0.0)
    up = tl.load(gate_up_ptr + row * gate_up_stride + N + cols, mask=mask, other=0.0)
    g = gate.to(tl.float32)
    silu = (g / (1.0 + tl.exp(-g))).to(dtype).to(tl.float32)
    tl.store(out_ptr + row * out_stride + cols, (silu * up.to(tl.float32)).to(dtype), mask=mask)


def silu_mul(gate_up: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """gate_up [T, 2I] (gate first, as the fused weight) -> silu(gate) * up [T, I]."""
    require_float("gate_up", gate_up, 2)
    require(gate_up.shape[1] % 2 == 0, f"gate_up's width must be even, got {gate_up.shape[1]}")
    require(gate_up.stride(1) == 1, "gate_up's rows must be contiguous")
    if not use_triton(backend, gate_up.device):
        return silu_mul_reference(gate_up)
    require_runnable(silu_mul_kernel, gate_up.device)
    num_rows, n = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty(num_rows, n, dtype=gate_up.dtype, device=gate_up.device)
    if num_rows == 0:
        return out
    block = 1024
    grid = (num_rows, triton.cdiv(n, block))
    silu_mul_kernel[grid](gate_up, gate_up.stride(0), out, out.stride(0), n, BLOCK=block)
    return out
