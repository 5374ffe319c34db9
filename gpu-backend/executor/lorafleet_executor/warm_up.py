"""Compiles the eager steps' Triton kernels at start: prefill attention, the fused norms
and RoPE at prefill sizes, and the LoRA segment kernels of every module at the fixed max
rank. Otherwise the first prefill after a start waits seconds for Triton's JIT (decode
kernels compile when DecodeGraphs captures). Every write goes to the scratch page.
"""

import numpy as np
import torch

from .adapter_layout import MODULES, adapter_layout
from .forward_batch import ForwardBatch
from .lora_batch import PlacedAdapter, build_lora_batch, slot_runs, to_device
from .model import LlamaModel
from .pool import UnifiedPool

CHUNK = 16  # new tokens of each of the two sequences


def warm_up_eager(model: LlamaModel, pool: UnifiedPool, max_rank: int) -> None:
    """One forward of two 16-token prefills, the first on an adapter of max_rank that
    targets every module (its pages all the scratch page), the second on none."""
    cfg, device, scratch = model.cfg, pool.data.device, pool.scratch_page
    shapes = cfg.module_shapes()
    spans, num_pages = adapter_layout(max_rank, list(MODULES), shapes, pool.page_width)
    adapter = PlacedAdapter(-1, max_rank, spans, np.full(num_pages, scratch, np.int32))
    row_slot = np.repeat(np.array([0, -1], np.int32), CHUNK)
    tokens = 2 * CHUNK
    pages = to_device(np.full(tokens, scratch, np.int32), device)
    table = to_device(np.full((2, CHUNK), scratch, np.int32), device)
    batch = ForwardBatch(
        token_ids=torch.zeros(tokens, dtype=torch.int64, device=device),
        positions=to_device(np.tile(np.arange(CHUNK), 2), device),
        k_pages=pages,
        v_pages=pages,
        k_table=table,
        v_table=table,
        cu_q=to_device(np.array([0, CHUNK, tokens], np.int32), device),
        ctx_lens=to_device(np.full(2, CHUNK, np.int32), device),
        max_q=CHUNK,
        logits_rows=to_device(np.array([CHUNK - 1, tokens - 1]), device),
        lora=build_lora_batch(
            [adapter], row_slot, slot_runs(row_slot), shapes, pool.page_width, device,
            max_rank=max_rank,
        ),
    )  # fmt: skip
    model.forward(pool, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
