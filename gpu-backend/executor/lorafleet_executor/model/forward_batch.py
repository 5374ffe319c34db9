"""The device-side inputs of one forward pass over a flattened batch of sequences.

Sequences are contiguous runs of rows; `cu_q` delimits them. Prefill chunks and
decode tokens mix freely: a chunk of n new tokens after c cached ones attends to
c + n keys through the sequence's page tables.
"""

from dataclasses import dataclass

import torch

from .lora_batch import LoraBatch


@dataclass
class ForwardBatch:
    token_ids: torch.Tensor  # int64 [T]
    positions: torch.Tensor  # int64 [T]
    k_pages: torch.Tensor  # int32 [T]: where each new token's K goes
    v_pages: torch.Tensor  # int32 [T]
    k_table: torch.Tensor  # int32 [B, max_ctx]: K page of every position of each seq
    v_table: torch.Tensor  # int32 [B, max_ctx]
    cu_q: torch.Tensor  # int32 [B + 1]: row offsets of each seq's new tokens
    ctx_lens: torch.Tensor  # int32 [B]: cached + new tokens
    max_q: int  # most new tokens of one seq
    logits_rows: torch.Tensor  # int64 [N]: rows whose logits are wanted
    lora: LoraBatch | None  # None: no row uses an adapter
