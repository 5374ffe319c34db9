"""Workbench for the LoRA kernels' block sizes: decode shrink and expand timed apart,
and the prefill (segment) shrink.

Llama-2-7B q/k/v shapes; prints one line per (case, kernel, config) to stdout, each the
median per-call time from CUDA-graph replays (as lora_bench.py times them).

    python bench/kernels/lora_tune.py            # decode
    python bench/kernels/lora_tune.py --tiles    # the expand on blocks of rows on one adapter
    python bench/kernels/lora_tune.py --prefill  # the segment shrink
"""

import itertools
import sys
from functools import partial

import torch
from lora_bench import LLAMA7B, build_case, time_us
from lorafleet_executor.kernels import lora_shrink
from lorafleet_executor.kernels.lora_decode import expand_decode, shrink_decode
from lorafleet_executor.kernels.lora_prefill import shrink_prefill
from lorafleet_executor.model.lora_batch import slot_runs

CASES = [(64, 64, 16), (64, 1, 16), (256, 256, 16), (64, 64, 64)]  # rows, adapters, rank
# rows, adapters (rows sorted: one run each), rank; every block of 16 rows on one adapter
TILE_CASES = [(64, 1, 16), (64, 4, 16), (256, 1, 16), (256, 8, 64)]
# rows, adapters (one run each), rank; tables padded to rank 64 (the server's max rank)
PREFILL_CASES = [(256, 1, 16), (256, 1, 64), (1024, 8, 16), (2048, 4, 64)]


def tune_prefill(device, gen) -> None:
    for rows, n, rank in PREFILL_CASES:
        row_slot = (torch.arange(rows) * n // rows).to(torch.int32)
        starts, slots = (torch.from_numpy(a).to(device) for a in slot_runs(row_slot.numpy()))
        ranks = [rank] * n
        # an unused slot of rank 64 pads the tables as the server's max rank does
        case = build_case(LLAMA7B, rows, ranks + [64], row_slot, None, torch.bfloat16, device, gen)
        h = torch.empty(3, rows, case.a_pages.shape[2], device=device)
        configs = itertools.product((16, 32, 64), (64, 128, 256), (4, 8), (2, 3, 4))
        for block_r, block_k, warps, stages in configs:
            shrink = partial(
                shrink_prefill, case.x, case.pool, case.a_pages, case.ranks, (starts, slots), h,
                rows // n, False, block_r=block_r, block_k=block_k, num_warps=warps,
                num_stages=stages,
            )  # fmt: skip
            try:
                us = time_us(shrink, device, 10, 20)
            except Exception as error:  # e.g. out of shared memory
                print(f"prefill rows={rows} n={n} r={rank} R{block_r} K{block_k}: {error}")
                continue
            print(
                f"prefill rows={rows} n={n} r={rank} shrink R{block_r} K{block_k} w{warps}"
                f" s{stages}: {us:.1f}"
            )


def tune_tiles(device, gen) -> None:
    for rows, n, rank in TILE_CASES:
        row_slot = (torch.arange(rows) * n // rows).to(torch.int32)
        case = build_case(LLAMA7B, rows, [rank] * n, row_slot, None, torch.bfloat16, device, gen)
        h = lora_shrink(case.x, case.pool, case.a_pages, case.ranks, case.row_slot)
        for block_n, warps in itertools.product((256, 512, 1024), (2, 4, 8)):
            expand = partial(
                expand_decode, case.y, h, case.pool, case.b_pages, case.ranks, case.row_slot,
                LLAMA7B.out_features, block_n=block_n, num_warps=warps,
            )  # fmt: skip
            us = time_us(expand, device, 10, 20)
            print(f"tiles rows={rows} n={n} r={rank} expand N{block_n} w{warps}: {us:.1f}")


def main() -> None:
    device, gen = torch.device("cuda"), torch.Generator().manual_seed(0)
    if "--prefill" in sys.argv[1:]:
        tune_prefill(device, gen)
        return
    if "--tiles" in sys.argv[1:]:
        tune_tiles(device, gen)
        return
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
