"""One rank's share of a LoRA adapter, packed into the rank's page layout.

The split follows the base weights so that LoRA adds no collective of its own
(README.md here):

    column-parallel q k v gate up:  A [r, in] whole on every rank (x is whole there, so
        every rank computes the same h = x·Aᵀ), Bᵀ [r, out] split along `out` like the
        base rows, so y's local columns get their own share of h·Bᵀ.
    row-parallel o down:  A split along `in` like the base columns (x is split there:
        each rank's h_r = x_r·A_rᵀ is a partial sum), Bᵀ whole, so h_r·Bᵀ is a partial
        sum of the delta and rides in the base all-reduce: Σ_r h_r·Bᵀ = x·Aᵀ·Bᵀ.

Every rank packs its share with the rank-local ModelConfig (`TensorShard.local_config`),
so its page count is the same on every rank and `num_pages` of `adapter_staged` names
the pages of one rank's share (each page W/N wide).

Example:
    adapter = parse_adapter_shard(7, "/adapters/r8", cfg, shard, 64, torch.bfloat16)
    adapter.rows.shape  # [num_layers, num_pages, W / N]
"""

from pathlib import Path

import torch

from ..model.adapters import ParsedAdapter, packed_adapter, read_adapter_files
from ..model.config import ModelConfig
from .shard import COLUMN_PARALLEL, TensorShard


def parse_adapter_shard(
    adapter_id: int,
    path: str | Path,
    cfg: ModelConfig,
    shard: TensorShard,
    max_rank: int,
    dtype: torch.dtype,
    pin: bool = False,
) -> ParsedAdapter:
    # Checked whole (shapes, values) first, so every rank refuses the same files.
    files = read_adapter_files(path, cfg, max_rank)
    local = shard.local_config(cfg)
    share = {key: _share(shard, cfg, key[1], key[2], t) for key, t in files.weights.items()}
    return packed_adapter(adapter_id, files, share, local, dtype, pin)


def _share(
    shard: TensorShard, cfg: ModelConfig, module: str, kind: str, t: torch.Tensor
) -> torch.Tensor:
    """lora_A [r, in] or lora_B [out, r] cut to this rank's share."""
    if module in COLUMN_PARALLEL:
        if kind == "A":
            return t
        start, end = shard.out_range(module, cfg)
        return t[start:end]
    if kind == "B":
        return t
    start, end = shard.in_range(module, cfg)
    return t[:, start:end]
