"""Where an eager step's time goes: the executor's forward at Llama-2-7B shapes (random
weights) on decode, prefill and mixed batches, on the base model and with every sequence
on one of N adapters (ranks 8-64, q/k/v/o, zipf(1) as the serving benchmark).

    python bench/gpu/step_profile.py --out $OUT/step_profile.json --profile $OUT/step.txt
    python bench/gpu/step_profile.py --smoke --out /tmp/step_profile.json   # CPU, seconds
    python bench/gpu/step_profile.py --model /tmp/llama-2-7b --adapters-dir /tmp/adapters \
        --out $OUT/step_profile_served.json         # served decode steps (served_steps.py)

For each batch: `step_ms`, the wall time of one eager step (the GPU's work done),
`host_ms`, the time until forward() returns: the host's share of launching it, and
`graph_ms`, the same batch replayed as one CUDA graph (the GPU's work alone; the
executor's graphs pad it to a bucket). A step whose host_ms reaches its step_ms is bound
by the host, not the GPU. --profile writes cProfile's table of the eager mixed step with
adapters and the torch profiler's kernel table of its graph-free GPU work.

With --model (a folder as make_model.py writes it) it runs the executor's own decode steps
at --batch instead, base and on the adapters of --adapters-dir, launched ahead as the
server does: host-to-device copies per step and the GPU's idle fraction between steps
(served_steps.py; `decode_gpu_idle_fraction` is the lora run's).
"""

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lorafleet_executor.model.pool import UnifiedPool
from roofline import profile_step, random_model, time_decode
from run_info import REPO, device_folder, run_info
from served_steps import served_decode
from shapes import SHAPES
from tp_bench import Workload, sync_device

KINDS = ("decode", "prefill", "mixed")


def time_step(model, pool, batch, warmup: int, steps: int, device) -> dict:
    """Median wall and host-launch milliseconds of one eager forward."""
    for _ in range(warmup):
        model.forward(pool, batch)
    walls, hosts = [], []
    for _ in range(steps):
        sync_device(device)
        started = time.perf_counter()
        model.forward(pool, batch)
        launched = time.perf_counter()
        sync_device(device)
        walls.append(time.perf_counter() - started)
        hosts.append(launched - started)
    timed = {"step_ms": float(np.median(walls)) * 1e3, "host_ms": float(np.median(hosts)) * 1e3}
    if device.type == "cuda":
        timed["graph_ms"] = time_decode(model, pool, batch, warmup, steps, device, True) * 1e3
    return timed


def profile_table(model, pool, batch, device, rows: int = 40) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        model.forward(pool, batch)
    sync_device(device)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(rows)
    return text.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--adapters", type=int, default=2000)
    parser.add_argument("--ranks", default="8,16,32,64")
    parser.add_argument("--modules", default="q,k,v,o")
    parser.add_argument("--batch", type=int, default=64, help="decode sequences")
    parser.add_argument("--context", type=int, default=512, help="cached tokens per decode seq")
    parser.add_argument("--prefill-seqs", type=int, default=1)
    parser.add_argument("--prefill-len", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/<device>/)")
    parser.add_argument("--profile", type=Path, help="cProfile table of the mixed LoRA step")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on CPU")
    parser.add_argument("--model", type=Path, help="served decode steps of this model folder")
    parser.add_argument("--adapters-dir", type=Path, help="with --model: adapter folders")
    parser.add_argument("--served-prompt", type=int, default=128, help="with --model")
    args = parser.parse_args(argv)
    if args.model:
        device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
        return write(args, served(args, device), "step_profile_served.json", device)
    if args.smoke:
        args.shape, args.adapters, args.batch, args.context = "tiny", 40, 4, 8
        args.prefill_len, args.warmup, args.steps = 8, 1, 2
    device, dtype, cfg, model = random_model(args.shape, args.smoke, "step_profile.py")
    work_args = argparse.Namespace(
        seed=0, ranks=[int(r) for r in args.ranks.split(",")], num_adapters=args.adapters,
        modules=args.modules.split(","), batch=args.batch, context=args.context,
        prefill_seqs=args.prefill_seqs, prefill_len=args.prefill_len,
    )  # fmt: skip
    work = Workload(work_args, cfg, cfg)
    pool = UnifiedPool(cfg.num_layers, work.num_pages, cfg.page_width, dtype, device)
    pool.data.normal_(0, 0.02)
    runs = {}
    for kind in KINDS:
        runs[kind] = {}
        for label, with_lora in (("base", False), ("lora", True)):
            batch = work.batch(kind, with_lora, device)
            runs[kind][label] = time_step(model, pool, batch, args.warmup, args.steps, device)
            print(f"{kind} {label}: {runs[kind][label]}", file=sys.stderr, flush=True)
    if args.profile:
        batch = work.batch("mixed", True, device)
        args.profile.write_text(profile_table(model, pool, batch, device))
        kernels = args.profile.with_name(f"{args.profile.stem}-kernels.txt")
        kernels.write_text(profile_step(model, pool, batch, device))
    result = {
        "bench": "step_profile",
        **run_info(device),
        "shape": args.shape,
        "workload": {k: v for k, v in vars(work_args).items()},
        "adapters_in_batch": len(work.adapters),
        "runs": runs,
    }
    write(args, result, "step_profile.json", device)


def served(args: argparse.Namespace, device: torch.device) -> dict:
    adapters = sorted(p for p in (args.adapters_dir or Path()).glob("*/adapter_config.json"))
    adapters = [p.parent for p in adapters][: args.batch] if args.adapters_dir else []
    runs = {}
    for label, chosen in (("base", []), ("lora", adapters)):
        if label == "lora" and not chosen:
            continue
        runs[label] = served_decode(
            args.model,
            chosen,
            args.batch,
            args.served_prompt,
            args.steps,
            args.warmup,
            device.type,
        )
        print(f"served {label}: {runs[label]}", file=sys.stderr, flush=True)
    return {
        "bench": "step_profile_served",
        **run_info(device),
        "model": str(args.model),
        "runs": runs,
        "decode_gpu_idle_fraction": runs.get("lora", runs["base"])["gpu_idle_fraction"],
    }


def write(args: argparse.Namespace, result: dict, name: str, device: torch.device) -> None:
    folder = REPO / "bench" / "results" / device_folder(device)
    out = args.out or folder / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
