"""One base projection's weight (q k v o gate up down) as it is served: dense, quantized
to FP8 at load (--quantization fp8 on a bf16 checkpoint) or an FP8 checkpoint's own
float8 weight and scales (fp8_checkpoint.py) — whole, or a tensor-parallel rank's rows
(column-parallel) or columns (row-parallel).

Per-channel scales are whole rows' scales, so a row-parallel rank quantizing at load
reads whole rows and keeps its columns: every rank's share is the TP=1 weight's. Block
scales split along blocks: a rank's rows or columns must start (and, but for the last
rank, end) on a block boundary.

Example:
    projections = ProjectionReader(reader, cfg.fp8_checkpoint, Fp8Plan(True, "scaled_mm"))
    w = projections.read("model.layers.0.mlp.down_proj", cols=(0, 5504))   # Fp8Weight
"""

from dataclasses import dataclass

import torch

from ..errors import ModelInvalid
from .fp8_checkpoint import Fp8Checkpoint
from .linear import Fp8Weight, Projection, fuse, quantize_weight
from .tensor_reader import Range, TensorReader


@dataclass(frozen=True)
class Fp8Plan:
    """How the base projections are served in FP8."""

    quantize_dense: bool  # dense checkpoint weights are quantized at load, per channel
    gemm: str  # the GEMM of per-channel weights (linear.FP8_GEMMS); block ones: "triton"

    def gemm_for(self, weight: torch.Tensor, block: tuple[int, int] | None) -> str:
        if self.gemm == "torch":
            return "torch"
        # torch._scaled_mm takes per-channel scales, and widths that are multiples of 16
        if block is not None or any(d % 16 for d in weight.shape):
            return "triton"
        return self.gemm


class ProjectionReader:
    def __init__(
        self, reader: TensorReader, fmt: Fp8Checkpoint | None, plan: Fp8Plan | None
    ) -> None:
        self.reader, self.fmt, self.plan = reader, fmt, plan

    def read(self, name: str, rows: Range = None, cols: Range = None) -> Projection:
        """`name` is the module's, e.g. model.layers.0.self_attn.q_proj."""
        weight = f"{name}.weight"
        if self.reader.is_fp8(weight):
            if self.fmt is None or self.plan is None:
                raise ModelInvalid(f"{weight} is float8 but config.json has no quantization_config")
            return self._checkpoint_fp8(name, rows, cols)
        if self.plan is None or not self.plan.quantize_dense:
            return self.reader.take(weight, rows, cols)
        whole_rows = self.reader.take_stored(weight, rows)
        w = quantize_weight(whole_rows, self.plan.gemm_for(whole_rows, None))
        del whole_rows
        if cols is not None:
            w.weight = w.weight[:, cols[0] : cols[1]].contiguous()
            w.gemm = self.plan.gemm_for(w.weight, None)
        return w

    def read_stacked(self, parts: list[tuple[str, Range]], what: str) -> Projection:
        """Modules (with their rows) stacked into one projection (q/k/v, gate/up), its
        GEMM chosen for the stacked shape."""
        stacked = fuse([self.read(name, rows=rows) for name, rows in parts], what)
        if isinstance(stacked, Fp8Weight):
            assert self.plan is not None
            stacked.gemm = self.plan.gemm_for(stacked.weight, stacked.block)
        return stacked

    def _checkpoint_fp8(self, name: str, rows: Range, cols: Range) -> Fp8Weight:
        fmt, plan = self.fmt, self.plan
        assert fmt is not None and plan is not None
        out_features, in_features = self.reader.shape(f"{name}.weight")
        scale_name = f"{name}.{fmt.scale_suffix}"
        stored = self.reader.take_stored(scale_name).float()
        r0, r1 = rows or (0, out_features)
        if fmt.kind == "tensor":
            if stored.numel() != 1:
                raise ModelInvalid(
                    f"{scale_name} has shape {tuple(stored.shape)}; a per-tensor scale is 1 number"
                )
            scale = stored.reshape(1).expand(r1 - r0)
        elif fmt.kind == "channel":
            if stored.numel() != out_features:
                raise ModelInvalid(
                    f"{scale_name} has shape {tuple(stored.shape)}; "
                    f"per-channel scales are [{out_features}, 1]"
                )
            scale = stored.reshape(-1)[r0:r1]
        else:
            bn, bk = fmt.block
            blocks = (-(-out_features // bn), -(-in_features // bk))
            if tuple(stored.shape) != blocks:
                raise ModelInvalid(
                    f"{scale_name} has shape {tuple(stored.shape)}; "
                    f"blocks of {bn}x{bk} make {blocks}"
                )
            c0, c1 = cols or (0, in_features)
            scale = stored[
                _blocks(r0, r1, bn, out_features, f"{name} rows"),
                _blocks(c0, c1, bk, in_features, f"{name} columns"),
            ]
        weight = self.reader.take_stored(f"{name}.weight", rows, cols)
        return Fp8Weight(weight, scale.contiguous(), fmt.block, plan.gemm_for(weight, fmt.block))


def _blocks(start: int, end: int, size: int, whole: int, what: str) -> slice:
    """The blocks of [start, end): it must begin on a block and end on one or at `whole`."""
    if start % size or (end % size and end != whole):
        raise ModelInvalid(
            f"{what} [{start}, {end}) do not fall on its {size}-wide FP8 scale blocks: "
            "choose a tensor_parallel_size that splits them along blocks"
        )
    return slice(start // size, -(-end // size))
