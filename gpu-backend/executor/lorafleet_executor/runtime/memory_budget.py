"""How many pages the pool gets from `gpu_memory_utilization`, as vLLM's flag of that name.

On CUDA: the fraction of total GPU memory, minus what is already in use (weights,
other processes), minus the activation workspace measured by one profiling forward
over max_num_batched_tokens tokens and one sampling pass over max_num_seqs rows, twice with
CUDA graphs (their private memory pool holds the activations of the largest bucket, at
most a step's, beside the eager steps' cached ones). On CPU: the fraction of the memory
available now.
"""

import os

import numpy as np
import torch

from ..errors import CapacityExceeded
from ..model.config import ModelConfig
from ..model.forward_batch import ForwardBatch
from ..model.llama import LlamaModel
from ..model.pool import UnifiedPool, pages_for_budget
from ..model.sampling import SamplingParams, TokenHistory, sample
from ..model.upload import Packing, StepUpload


def pages_from_memory(
    model: LlamaModel,
    cfg: ModelConfig,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    max_lora_rank: int,
    dtype: torch.dtype,
    device: torch.device,
    graphs: bool = False,
) -> int:
    if device.type == "cuda":
        workspace = _profile_workspace(
            model, cfg, max_num_batched_tokens, max_num_seqs, dtype, device
        )
        # LoRA's fp32 h buffers ([M, T, R] for q/k/v) are not in the base-only profile.
        workspace += 2 * 3 * max_num_batched_tokens * max_lora_rank * 4
        workspace *= 2 if graphs else 1
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(device)
        budget = int(total * gpu_memory_utilization) - (total - free) - workspace
    else:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        budget = int(available * gpu_memory_utilization)
    pages = pages_for_budget(budget, cfg.num_layers, cfg.page_width, dtype)
    if pages < 1:
        raise CapacityExceeded(
            f"gpu_memory_utilization {gpu_memory_utilization} leaves no memory for the pool "
            f"(budget {budget} bytes after weights and workspace)"
        )
    return pages


def _profile_workspace(
    model: LlamaModel,
    cfg: ModelConfig,
    num_tokens: int,
    num_seqs: int,
    dtype: torch.dtype,
    device: torch.device,
) -> int:
    """Peak bytes of one forward + sampling at the step limits."""
    # Every token writes its K/V to pages 0 and 1 of a two-page pool: the values are
    # garbage, the memory traffic and buffers are those of a real step.
    pool = UnifiedPool(cfg.num_layers, 2, cfg.page_width, dtype, device)
    zeros = torch.zeros(num_tokens, dtype=torch.int32, device=device)
    batch = ForwardBatch(
        token_ids=zeros.long(),
        positions=torch.arange(num_tokens, device=device) % cfg.max_position,
        k_pages=zeros,
        v_pages=zeros + 1,
        k_table=zeros[None, :],
        v_table=zeros[None, :] + 1,
        cu_q=torch.tensor([0, num_tokens], dtype=torch.int32, device=device),
        ctx_lens=torch.tensor([num_tokens], dtype=torch.int32, device=device),
        max_q=num_tokens,
        logits_rows=torch.arange(num_seqs, device=device) % num_tokens,
        lora=None,
    )
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    logits = model.forward(pool, batch)
    ones = np.ones(num_seqs, np.float32)
    # penalties over one token per row: their buffers are [N, V] regardless
    histories = [TokenHistory(np.zeros(1, np.int64), 0) for _ in range(num_seqs)]
    packing = Packing()
    params = SamplingParams.pack(
        packing,
        [None] * num_seqs,
        histories,
        temperature=ones,
        top_p=ones * 0.9,
        top_k=np.full(num_seqs, 50),
        min_p=ones * 0.05,
        presence_penalty=ones,
        frequency_penalty=ones,
        repetition_penalty=ones * 1.1,
        logprobs=np.full(num_seqs, 20),
    )
    sample(logits, params(StepUpload(device).send(packing)))
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - before
    del pool, logits
    return peak
