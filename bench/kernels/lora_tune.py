"""Workbench for the decode LoRA kernels' block sizes: shrink and expand timed apart.

Llama-2-7B q/k/v shapes; prints one line per (case, kernel, config) to stdout, each the
median per-call time from CUDA-graph replays (as lora_bench.py times them).

    python bench/kernels/lora_tune.py
"""

import itertools
from functools import partial

import torch
from lora_bench import LLAMA7B, build_case, time_us
from lorafleet_executor.kernels import lora_shrink
from lorafleet_executor.kernels.lora_decode import expand_decode, shrink_decode

CASES = [(64, 64, 16), (64, 1, 16), (256, 256, 16), (64, 64, 64)]  # rows, adapters, rank


def main() -> None:
    device, gen = torch.device("cuda"), torch.Generator().manual_seed(0)
    for rows, n, rank in CASES:
        row_slot = (torch.arange(rows) % n).to(torch.int32)
        case = build_case(LLAMA7B, rows, [rank] * n, row_slot, None, torch.bfloat16, device, gen)
        args = (case.x, case.pool, case.a_pages, case.ranks, case.row_slot)
        h = lora_shrink(*args)
        for block_r, block_k, warps in itertools.product((4, 8, 16), (256, 512, 1024), (4, 8)):
            shrink = partial(
                shrink_decode, *args, h, block_r=block_r, block_k=block_k, num_warps=warps
            )
            us = time_us(shrink, device, 10, 20)
            print(f"rows={rows} n={n} r={rank} shrink R{block_r} K{block_k} w{warps}: {us:.1f}")
        for block_r, block_n, warps in itertools.product((8, 16, 32), (256, 512, 1024), (4, 8)):
            expand = partial(
                expand_decode, case.y, h, case.pool, case.b_pages, case.ranks, case.row_slot,
                LLAMA7B.out_features, block_r=block_r, block_n=block_n, num_warps=warps,
            )  # fmt: skip
            us = time_us(expand, device, 10, 20)
            print(f"rows={rows} n={n} r={rank} expand R{block_r} N{block_n} w{warps}: {us:.1f}")


if __name__ == "__main__":
    main()
