"""One rank's share of the base weights, read straight from the safetensors shards.

Megatron's split (Shoeybi et al., 2019): q/k/v and gate/up are column-parallel (this
rank's rows of each matrix, i.e. its heads and its MLP columns, and the same rows of
their biases), o and down are row-parallel (this rank's input columns; the ranks'
outputs are partial sums that one all-reduce adds, so their biases are whole on every
rank and added once, after the all-reduce), and the embedding and lm_head are
vocabulary-parallel (this rank's rows, zero-padded to ceil(V / N) so every rank's logits
have one width). FP8 weights split with their scales (model/projection_reader.py): a
per-channel scale goes with its row, block scales along blocks.

Example:
    w = load_weight_shard(cfg, shard, "/models/llama-2-13b", torch.bfloat16, device)
    w.layers[0].qkv.shape  # ((Hq + 2·Hkv)·D / N, hidden)
"""

from pathlib import Path

import torch

from ..model.config import ModelConfig
from ..model.projection_reader import Fp8Plan
from ..model.weights import ModelWeights
from .shard import TensorShard


class ShardSplit:
    """model/weights.py's WeightSplit of one rank."""

    def __init__(self, cfg: ModelConfig, shard: TensorShard) -> None:
        self.cfg, self.shard = cfg, shard
        self.local = shard.local_config(cfg)

    def rows(self, module: str) -> tuple[int, int]:
        return self.shard.out_range(module, self.cfg)

    def cols(self, module: str) -> tuple[int, int]:
        return self.shard.in_range(module, self.cfg)

    def vocab_rows(self) -> tuple[tuple[int, int], int]:
        rows = self.shard.vocab_range(self.cfg.vocab_size)
        return rows, self.shard.vocab_shard_size(self.cfg.vocab_size) - (rows[1] - rows[0])


def load_weight_shard(
    cfg: ModelConfig,
    shard: TensorShard,
    path: str | Path,
    dtype: torch.dtype,
    device: torch.device,
    fp8: Fp8Plan | None = None,
) -> ModelWeights:
    return ModelWeights.load(cfg, path, dtype, device, split=ShardSplit(cfg, shard), fp8=fp8)
