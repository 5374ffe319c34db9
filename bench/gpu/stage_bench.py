"""Adapter staging throughput on the CPU: serial (one thread, as the executor staged
before) vs a pool of threads (the executor's --stage-threads), on synthetic
Llama-2-7B-shaped rank-16 q/k/v/o adapters (about 33.5 MB each, bf16).

    python bench/gpu/stage_bench.py                       # 16 adapters, 4 threads
    python bench/gpu/stage_bench.py --smoke               # tiny shape, seconds

Staging is what the executor does for `stage_adapter` (PROTOCOL.md): read the PEFT
folder, check it, pack it into the pool's page layout in host memory (pinned on a GPU
machine), through the executor's own `parse_adapter`. The adapters are written to a
temporary folder first, so reads come from the page cache: this measures the CPU work,
not the disk. Both runs must give the same packed rows, byte for byte.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from lorafleet_executor.model.adapters import ParsedAdapter, parse_adapter
from make_adapters import make_adapters
from run_info import REPO, device_folder, run_info
from shapes import SHAPES, model_config

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def stage_all(folders: list[Path], cfg, threads: int, pin: bool) -> tuple[float, list]:
    """Seconds to stage every folder with `threads` threads, and the adapters."""

    def stage(index: int) -> ParsedAdapter:
        return parse_adapter(index, folders[index], cfg, 64, torch.bfloat16, pin=pin)

    started = time.perf_counter()
    if threads == 1:
        adapters = [stage(i) for i in range(len(folders))]
    else:
        with ThreadPoolExecutor(threads) as pool:
            adapters = list(pool.map(stage, range(len(folders))))
    return time.perf_counter() - started, adapters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--threads", default="1,2,4", help="pool sizes, comma-separated")
    parser.add_argument(
        "--torch-threads",
        default="0,1",
        help="torch intra-op threads per run, comma-separated (0: torch's default)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of this many per size")
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/<device>/)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, 4 adapters, CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.count, args.repeats = "tiny", 4, 1
    sizes = sorted({int(n) for n in args.threads.split(",")} | {1})
    shape = SHAPES[args.shape]
    cfg = model_config(shape)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    pin = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="stage-bench-") as tmp:
        names = [(f"adapter-{i:04d}", args.rank) for i in range(args.count)]
        make_adapters(shape, names, Path(tmp), TARGETS, None, 0, "cpu", args.shape)
        folders = [Path(tmp) / name for name, _ in names]
        stage_all(folders[:1], cfg, 1, pin)  # warm-up: imports, allocator
        runs, reference = [], None
        default_torch_threads = torch.get_num_threads()
        for torch_threads, threads in [
            (t, n) for t in (int(x) for x in args.torch_threads.split(",")) for n in sizes
        ]:
            # Intra-op threads of torch and the pool's threads share the cores: on a
            # small machine either one alone can already fill them.
            torch.set_num_threads(torch_threads or default_torch_threads)
            best, adapters = min(
                (stage_all(folders, cfg, threads, pin) for _ in range(args.repeats)),
                key=lambda run: run[0],
            )
            rows = [a.rows for a in adapters]
            if reference is None:
                reference = rows
            identical = all(torch.equal(a, b) for a, b in zip(rows, reference, strict=True))
            if not identical:
                sys.exit(f"{threads} threads packed different rows than serial staging")
            runs.append(
                {
                    "torch_threads": torch.get_num_threads(),
                    "threads": threads,
                    "seconds": best,
                    "ms_per_adapter": best / args.count * 1e3,
                    "adapters_per_s": args.count / best,
                    "identical_to_serial": identical,
                }
            )
        adapter_bytes = adapters[0].host_bytes
    serial = {r["torch_threads"]: r["seconds"] for r in runs if r["threads"] == 1}
    for run in runs:
        run["speedup_vs_serial"] = serial[run["torch_threads"]] / run["seconds"]
    result = {
        "bench": "stage",
        **run_info(device),
        "cpu_cores": os.cpu_count(),
        # Other work on the machine skews CPU timings: the 1-minute load when done.
        "load_average_1m": os.getloadavg()[0],
        "shape": args.shape,
        "adapters": args.count,
        "rank": args.rank,
        "targets": TARGETS,
        "adapter_host_bytes": adapter_bytes,
        "pinned": pin,
        "repeats": args.repeats,
        "runs": runs,
    }
    out = args.out or REPO / "bench" / "results" / device_folder(device) / "stage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        print(
            f"torch threads {run['torch_threads']}, {run['threads']} stage thread(s): "
            f"{run['ms_per_adapter']:.1f} ms/adapter, "
            f"{run['speedup_vs_serial']:.2f}x serial"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
