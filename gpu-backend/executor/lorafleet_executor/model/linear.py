"""A base projection's weight, dense (the model's dtype) or FP8 with its scales, and
y = x·Wᵀ (+ bias) for either: what every q k v o gate up down GEMM of the forward calls.

FP8 weights are float8 e4m3 with float32 scales per output channel (quantized at load
from a bf16 checkpoint, or an FP8 checkpoint's per-channel / per-tensor scales) or per
block of bn x bk weights (block-quantized checkpoints, 128 x 128). Activations stay in
the model's dtype outside the GEMM, which quantizes them per token
(kernels/fp8_gemm.py), so LoRA, norms and attention see the same tensors as with a
dense base.

Example:
    w = quantize_weight(dense, gemm="scaled_mm")    # Fp8Weight, per-channel scales
    y = project(x, w, bias)                        # x [T, in] -> [T, out], x's dtype
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ModelInvalid
from ..kernels.fp8_gemm import dequantize_weight, fp8_linear
from ..kernels.fp8_quant import quantize_rows

# "torch": the reference (dequantize, then matmul), the CPU path; "scaled_mm" and
# "triton": FP8 tensor cores (kernels/fp8_gemm.py)
FP8_GEMMS = ("torch", "scaled_mm", "triton")


@dataclass
class Fp8Weight:
    weight: torch.Tensor  # float8_e4m3fn [out, in]
    scale: torch.Tensor  # float32 [out] (per channel) or [ceil(out/bn), ceil(in/bk)] (block)
    block: tuple[int, int] | None  # (bn, bk), or None for per-channel scales
    gemm: str  # one of FP8_GEMMS; block scales never "scaled_mm"

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape

    def nbytes(self) -> int:
        return self.weight.numel() + self.scale.numel() * 4

    def dequantized(self) -> torch.Tensor:
        """float32 [out, in]."""
        return dequantize_weight(self.weight, self.scale, self.block)


Projection = torch.Tensor | Fp8Weight


def project(x: torch.Tensor, w: Projection, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [T, in] -> x·Wᵀ + bias [T, out] in x's dtype."""
    if isinstance(w, torch.Tensor):
        return F.linear(x, w, bias)
    y = fp8_linear(x, w.weight, w.scale, w.block, backend=w.gemm)
    return y if bias is None else y.add_(bias)


def nbytes(w: Projection | None) -> int:
    if w is None:
        return 0
    return w.nbytes() if isinstance(w, Fp8Weight) else w.numel() * w.element_size()


def quantize_weight(dense: torch.Tensor, gemm: str) -> Fp8Weight:
    """Per output channel: each row's largest |w| maps to e4m3's largest value, 448."""
    q, scale = quantize_rows(dense, backend="torch")
    return Fp8Weight(q, scale, None, gemm)


def fuse(parts: list[Projection], what: str) -> Projection:
    """Projections stacked along their output rows (q/k/v, gate/up): one GEMM."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts, 0)
    if not all(isinstance(p, Fp8Weight) for p in parts):
        raise ModelInvalid(f"{what} mix float8 and unquantized weights")
    first = parts[0]
    if any(p.block != first.block for p in parts):
        raise ModelInvalid(f"{what} have different FP8 scale blocks")
    if first.block is not None:
        bn = first.block[0]
        for p in parts[:-1]:
            if p.shape[0] % bn:
                raise ModelInvalid(
                    f"{what}: {p.shape[0]} output rows are not a multiple of the weight block "
                    f"{bn}, so their block scales cannot be stacked"
                )
    return Fp8Weight(
        torch.cat([p.weight for p in parts], 0),
        torch.cat([p.scale for p in parts], 0),
        first.block,
        first.gemm,
    )
