"""Base-model decode against the memory-bandwidth roofline (issue 7, target 1): Llama-2-7B
shapes, bf16, no adapters, decode at batch 64 and 128.

    python bench/gpu/roofline.py --out $OUT/roofline.json
    python bench/gpu/roofline.py --smoke --out /tmp/roofline.json   # tiny shape, CPU, seconds

A decode step reads every weight once and every cached K and V once, so its floor is
(weight bytes + KV bytes read) / bandwidth, with bandwidth 3.02e12 B/s, the device copy
bandwidth measured on the H100 (/work/shared/DEVICE.md; --bandwidth to change). The step
is the executor's real forward (LlamaModel, the Triton paged attention, random weights:
only shapes matter) on a batch of B sequences with C cached tokens each, timed eagerly and
replayed as one CUDA graph (as the executor's decode graphs run it). roofline_fraction =
floor / measured step time; the issue asks >= 0.75.

With --adapters N (default 2,000; 0 skips it) the same batch runs again with every row on
one of N adapters (ranks drawn from --ranks, rows zipf(1) over them, q/k/v/o as the
paper, the batch's adapters in the pool): `lora.vs_base`, the executor-level bound of
the serving benchmark's lora2000_vs_base. --profile writes the kernel table of each.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lorafleet_executor.model.llama import LlamaModel
from lorafleet_executor.model.pool import UnifiedPool
from lorafleet_executor.parallel.shard import TensorShard
from run_info import REPO, device_folder, run_info
from shapes import SHAPES, model_config
from tp_bench import Workload, random_weights, sync_device, weight_bytes

H100_COPY_BANDWIDTH = 3.02e12  # B/s, /work/shared/DEVICE.md


class OneRank:
    """The single-GPU stand-in for a TensorGroup that tp_bench's helpers read `.shard` of."""

    shard = TensorShard(0, 1)


def decode_floor_bytes(cfg, batch: int, context: int, dtype: torch.dtype) -> dict:
    """Bytes one decode step must read: every weight (of the embedding only the batch's
    rows), and K and V of every cached token and the new one."""
    element = torch.empty(0, dtype=dtype).element_size()
    kv = 2 * cfg.num_layers * batch * (context + 1) * cfg.page_width * element
    embedding_unread = (cfg.vocab_size - batch) * cfg.hidden_size * element
    weights = weight_bytes(cfg, dtype) - embedding_unread
    return {"weight_bytes": weights, "kv_bytes": kv, "total_bytes": weights + kv}


def time_decode(model, pool, batch, warmup: int, steps: int, device, graph: bool) -> float:
    """Seconds per decode step, eagerly or as a replayed CUDA graph."""

    def step():
        return model.forward(pool, batch)

    run = step
    if graph:
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):  # Triton compiles and autotunes outside the capture
                step()
        torch.cuda.current_stream(device).wait_stream(stream)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            step()
        run = captured.replay
    for _ in range(warmup):
        run()
    sync_device(device)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        run()
        sync_device(device)
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def profile_step(model, pool, batch, device) -> str:
    """Where one eager decode step's time goes, kernel by kernel (3 steps profiled)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(3):
            model.forward(pool, batch)
        sync_device(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=60)


def random_model(shape: str, smoke: bool, script: str):
    """(device, dtype, cfg, LlamaModel) of `shape` with random weights: bf16 + Triton on
    the GPU, fp32 + torch kernels for --smoke on CPU; without a GPU only smoke runs."""
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    if device.type != "cuda" and not smoke:
        sys.exit(f"{script} measures a GPU; use --smoke on CPU")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    backend = "triton" if device.type == "cuda" else "torch"
    torch.manual_seed(0)
    cfg = model_config(SHAPES[shape])
    model = LlamaModel(cfg, random_weights(cfg, OneRank(), dtype, device), backend, backend)
    return device, dtype, cfg, model


def best(timed: dict, key: str) -> float:
    """The better mode's figure (eager or graph) among those that ran."""
    return max(timed[m][key] for m in ("eager", "graph") if key in timed.get(m, {}))


def decode_arguments(description: str) -> argparse.ArgumentParser:
    """The flags of a decode benchmark (this one's, fp8_decode.py's)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--batches", default="64,128")
    parser.add_argument("--context", type=int, default=512, help="cached tokens per sequence")
    parser.add_argument(
        "--adapters", type=int, default=2000, help="also decode with every row on one of N (0: not)"
    )
    parser.add_argument("--ranks", default="8,16,32,64", help="adapter ranks, drawn uniformly")
    parser.add_argument("--modules", default="q,k,v,o", help="targeted modules, as the paper")
    parser.add_argument("--bandwidth", type=float, default=H100_COPY_BANDWIDTH, help="B/s")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/<device>/)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on CPU, eager only")
    return parser


def parse_decode_arguments(parser: argparse.ArgumentParser, argv: list[str] | None):
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.batches, args.context, args.warmup, args.steps = "tiny", "2,4", 8, 1, 2
    return args


def main(argv: list[str] | None = None) -> None:
    parser = decode_arguments(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profile", type=Path, help="write the torch profiler's kernel table of one eager step"
    )
    args = parse_decode_arguments(parser, argv)
    device, dtype, cfg, model = random_model(args.shape, args.smoke, "roofline.py")
    modes = ["eager", "graph"] if device.type == "cuda" else ["eager"]
    runs = []
    for batch_size in (int(b) for b in args.batches.split(",")):
        work_args = argparse.Namespace(
            seed=0, ranks=[int(r) for r in args.ranks.split(",")],
            num_adapters=max(1, args.adapters), modules=args.modules.split(","),
            batch=batch_size, context=args.context, prefill_seqs=1, prefill_len=1,
        )  # fmt: skip
        work = Workload(work_args, cfg, cfg)
        pool = UnifiedPool(cfg.num_layers, work.num_pages, cfg.page_width, dtype, device)
        pool.data.normal_(0, 0.02)
        floor = decode_floor_bytes(cfg, batch_size, args.context, dtype)
        floor_s = floor["total_bytes"] / args.bandwidth
        run = {"batch": batch_size, "context": args.context, **floor, "floor_ms": floor_s * 1e3}
        variants = [("base", False)] + ([("lora", True)] if args.adapters > 0 else [])
        for name, with_lora in variants:
            batch = work.batch("decode", with_lora, device)
            timed = run if name == "base" else run.setdefault(name, {})
            for mode in modes:
                try:
                    step_s = time_decode(
                        model, pool, batch, args.warmup, args.steps, device, graph=mode == "graph"
                    )
                except RuntimeError as error:  # e.g. a kernel that cannot be captured
                    timed[mode] = {"error": f"{type(error).__name__}: {error}"}
                    continue
                timed[mode] = {
                    "step_ms": step_s * 1e3,
                    "tokens_per_s": batch_size / step_s,
                    "achieved_bytes_per_s": floor["total_bytes"] / step_s,
                    "roofline_fraction": floor_s / step_s,
                }
            if args.profile:
                suffix = "" if name == "base" else f"-{name}"
                profile = args.profile.with_name(f"{args.profile.stem}-b{batch_size}{suffix}.txt")
                profile.write_text(profile_step(model, pool, batch, device))
        run["roofline_fraction"] = best(run, "roofline_fraction")
        if "lora" in run:
            run["lora"]["adapters_in_batch"] = len(set(work.rows_adapter["decode"].tolist()))
            # the ratio the serving benchmark's lora2000_vs_base bounds from above
            run["lora"]["vs_base"] = (
                best(run["lora"], "roofline_fraction") / run["roofline_fraction"]
            )
        runs.append(run)
        del pool, batch
    result = {
        "bench": "roofline",
        **run_info(device),
        "shape": args.shape,
        "dtype": str(dtype).removeprefix("torch."),
        "bandwidth_bytes_per_s": args.bandwidth,
        "bandwidth_source": "device copy bandwidth, /work/shared/DEVICE.md (H100)",
        "steps": args.steps,
        "runs": runs,
        # issue 7's headline: the worse of the batches, each at its better mode
        "base_roofline_fraction": min(r["roofline_fraction"] for r in runs),
    }
    out = args.out or REPO / "bench" / "results" / device_folder(device) / "roofline.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        modes = " ".join(
            f"{m} {run[m]['step_ms']:.2f} ms ({run[m]['roofline_fraction']:.2f})"
            for m in ("eager", "graph")
            if "step_ms" in run.get(m, {})
        )
        lora = run.get("lora", {})
        with_lora = f"; with LoRA x{lora['vs_base']:.2f} of base" if "vs_base" in lora else ""
        print(f"batch {run['batch']}: floor {run['floor_ms']:.2f} ms; {modes}{with_lora}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
