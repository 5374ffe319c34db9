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
from ..model.lora_batch import PlacedAdapter, mixed_segments, pack_lora_batch
from ..model.pool import UnifiedPool
from ..model.upload import Packing, StepUpload

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
    lead_rows, segments = mixed_segments(row_slot, cu_q)
    packing = Packing()
    pages = packing.add(np.full(tokens, scratch, np.int32))
    table = packing.add(np.full((3, CHUNK), scratch, np.int32))
    positions = packing.add(np.concatenate([np.arange(n) for n in new]))
    cu_q_at, ctx_lens, logits_rows = (packing.add(a) for a in (cu_q, new, cu_q[1:] - 1))
    lora = pack_lora_batch(
        [adapter], row_slot, segments, shapes, pool.page_width, packing,
        max_rank=max_rank, lead_rows=lead_rows,
    )  # fmt: skip
    sent = StepUpload(device).send(packing)
    batch = ForwardBatch(
        token_ids=torch.zeros(tokens, dtype=torch.int64, device=device),
        positions=sent[positions],
        k_pages=sent[pages],
        v_pages=sent[pages],
        k_table=sent[table],
        v_table=sent[table],
        cu_q=sent[cu_q_at],
        ctx_lens=sent[ctx_lens],
        max_q=CHUNK,
        logits_rows=sent[logits_rows],
        lora=lora(sent),
    )
    model.forward(pool, batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
