"""Command line for the standalone driver: synthetic requests over a model and adapters,
one JSON line of timings out. For smoke runs and first benchmarks without the engine.

Example:
    python -m lorafleet_reference.generate_cli --model .cache/fixtures/tiny-llama \\
        --adapter .cache/fixtures/adapters/tiny-r8 --requests 16 --max-new-tokens 32
"""

import argparse
import json
import time

import numpy as np
import torch

from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.executor import Executor

from .driver import Driver, Request


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="HF-format model directory")
    parser.add_argument("--adapter", action="append", default=[], help="PEFT dir (repeatable)")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--base-share", type=float, default=0.25, help="requests on no adapter")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--num-pages", type=int, default=0)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--max-num-batched-tokens", type=int, default=2048)
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--max-lora-rank", type=int, default=128)
    parser.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    config = InitConfig(
        model_path=args.model,
        dtype=args.dtype,
        device=args.device,
        num_pages=args.num_pages,
        gpu_memory_utilization=args.gpu_memory_utilization,
        max_lora_rank=args.max_lora_rank,
        max_num_seqs=args.max_num_seqs,
        max_num_batched_tokens=args.max_num_batched_tokens,
        cuda_graphs=args.cuda_graphs,
    )
    started = time.perf_counter()
    executor = Executor(config)
    init_s = time.perf_counter() - started
    driver = Driver(executor, chunk_size=args.chunk_size)
    for i, path in enumerate(args.adapter):
        driver.add_adapter(i, path)
    rng = np.random.default_rng(args.seed)
    vocab = executor.cfg.vocab_size
    requests = [
        Request(
            prompt=rng.integers(0, vocab, size=args.prompt_len).tolist(),
            adapter_id=-1
            if not args.adapter or rng.random() < args.base_share
            else int(rng.integers(len(args.adapter))),
            max_new_tokens=args.max_new_tokens,
        )
        for _ in range(args.requests)
    ]
    if executor.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    outputs = driver.generate(requests)
    wall_s = time.perf_counter() - started
    generated = sum(len(o.tokens) for o in outputs)
    report = {
        "model": args.model,
        "device": executor.device.type,
        "dtype": str(executor.dtype).removeprefix("torch."),
        "num_pages": executor.pool.num_pages,
        "adapters": len(args.adapter),
        "requests": args.requests,
        "prompt_len": args.prompt_len,
        "generated_tokens": generated,
        "steps": len(driver.results),
        "init_s": round(init_s, 3),
        "wall_s": round(wall_s, 3),
        "output_tokens_per_s": round(generated / wall_s, 1),
        # medians: the first prefill steps also pay for Triton's compiles
        "forward_ms_median": round(float(np.median([r.forward_ms for r in driver.results])), 3),
        "sample_ms_median": round(float(np.median([r.sample_ms for r in driver.results])), 3),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
