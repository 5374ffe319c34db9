"""One rank's share of the base weights, read straight from the safetensors shards.

Megatron's split (Shoeybi et al., 2019): q/k/v and gate/up are column-parallel (this
rank's rows of each matrix, i.e. its heads and its MLP columns), o and down are
row-parallel (this rank's input columns; the ranks' outputs are partial sums that one
all-reduce adds), and the embedding and lm_head are vocabulary-parallel (this rank's
rows, zero-padded to ceil(V / N) so every rank's logits have one width).

Example:
    w = load_weight_shard(cfg, shard, "/models/llama-2-13b", torch.bfloat16, device)
    w.layers[0].qkv.shape  # ((Hq + 2·Hkv)·D / N, hidden)
"""

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..model.config import ModelConfig, ModelInvalid
from ..model.weights import LayerWeights, ModelWeights, _check_shapes, _TensorReader
from .shard import TensorShard


def load_weight_shard(
    cfg: ModelConfig,
    shard: TensorShard,
    path: str | Path,
    dtype: torch.dtype,
    device: torch.device,
) -> ModelWeights:
    local = shard.local_config(cfg)
    reader = _TensorReader(Path(path), dtype, device)
    layers = []
    for i in range(cfg.num_layers):
        p = f"model.layers.{i}."
        column = {m: shard.out_range(m, cfg) for m in ("q", "k", "v", "gate", "up")}
        attn = [reader.take(f"{p}self_attn.{m}_proj.weight", rows=column[m]) for m in "qkv"]
        mlp = [reader.take(f"{p}mlp.{m}_proj.weight", rows=column[m]) for m in ("gate", "up")]
        bias = None
        if cfg.qkv_bias:
            bias = torch.cat(
                [reader.take(f"{p}self_attn.{m}_proj.bias", rows=column[m]) for m in "qkv"]
            )
        layers.append(
            LayerWeights(
                input_norm=reader.take(f"{p}input_layernorm.weight"),
                qkv=torch.cat(attn, 0),
                qkv_bias=bias,
                o=reader.take(f"{p}self_attn.o_proj.weight", cols=shard.in_range("o", cfg)),
                post_norm=reader.take(f"{p}post_attention_layernorm.weight"),
                gate_up=torch.cat(mlp, 0),
                down=reader.take(f"{p}mlp.down_proj.weight", cols=shard.in_range("down", cfg)),
            )
        )
    rows = shard.vocab_range(cfg.vocab_size)
    pad = shard.vocab_shard_size(cfg.vocab_size) - (rows[1] - rows[0])
    embed = F.pad(reader.take("model.embed_tokens.weight", rows=rows), (0, 0, 0, pad))
    has_head = reader.has("lm_head.weight")
    if not has_head and not cfg.tie_word_embeddings:
        raise ModelInvalid("lm_head.weight is missing and tie_word_embeddings is false")
    weights = ModelWeights(
        embed=embed,
        layers=layers,
        norm=reader.take("model.norm.weight"),
        lm_head=(
            F.pad(reader.take("lm_head.weight", rows=rows), (0, 0, 0, pad)) if has_head else embed
        ),
    )
    _check_shapes(replace(local, vocab_size=embed.shape[0]), weights)
    return weights
