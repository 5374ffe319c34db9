"""Compiles the eager steps' Triton kernels at start: prefill attention, the fused norms
and RoPE at prefill sizes, and the LoRA kernels of mixed steps (a decode row, then
segments) of every module at the fixed max rank. Otherwise the first prefill after a
start waits seconds for Triton's JIT (decode kernels compile when DecodeGraphs
captures). Every write goes to the scratch page.
"""

import numpy as np
import torch

from ..model.adapter_layout import MODULES, adapter_layout
from ..model.forward_batch import ForwardBatch
from ..model.llama import LlamaModel
from ..model.lora_batch import PlacedAdapter, build_lora_batch, mixed_segments
from ..model.pool import UnifiedPool
from ..model.transfer import to_device

CHUNK = 16  # new tokens of each of the two prefill sequences


def warm_up_eager(model: LlamaModel, pool: UnifiedPool, max_rank: int) -> None:
    """One forward of a one-token sequence and two 16-token prefills, the first two on an
    adapter of max_rank that targets every module (its pages all the scratch page), the
    last on none."""
    cfg, device, scratch = model.cfg, pool.data.device, pool.scratch_page
    shapes = cfg.module_shapes()
    spans, num_pages = adapter_layout(max_rank, list(MODULES), shapes, pool.page_width)
    adapter = PlacedAdapter(-1, max_rank, spans, np.full(num_pages, scratch, np.int32))
    cu_q = np.array([0, 1, 1 + CHUNK, 1 + 2 * CHUNK], np.int32)
    new = np.diff(cu_q)
    row_slot = np.repeat(np.array([0, 0, -1], np.int32), new)
    tokens = int(cu_q[-1])
    pages = to_device(np.full(tokens, scratch, np.int32), device)
    table = to_device(np.full((3, CHUNK), scratch, np.int32), device)
    lead_rows, segments = mixed_segments(row_slot, cu_q)
    batch = ForwardBatch(
        token_ids=torch.zeros(tokens, dtype=torch.int64, device=device),
        positions=to_device(np.concatenate([np.arange(n) for n in new]), device),
        k_pages=pages,
        v_pages=pages,
        k_table=table,
        v_table=table,
        cu_q=to_device(cu_q, device),
        ctx_lens=to_device(new, device),
        max_q=CHUNK,
        logits_rows=to_device(cu_q[1:] - 1, device),
        lora=build_lora_batch(
            [adapter], row_slot, segments, shapes, pool.page_width, device,
            max_rank=max_rank, lead_rows=lead_rows,
        ),
    )  # fmt: skip
    model.forward(pool, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
