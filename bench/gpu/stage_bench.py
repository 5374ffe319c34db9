"""Adapter staging on the executor's own path, disk or page cache -> host tier, for
distinct adapter files: Llama-2-7B rank-32 q/k/v/o adapters (64 MiB each, bf16) by default.

    python bench/gpu/stage_bench.py                       # 32 distinct files, 4 workers
    python bench/gpu/stage_bench.py --count 64 --rank 16  # other files
    python bench/gpu/stage_bench.py --smoke               # tiny shape, 4 adapters, CPU

A stage is what the executor does for `stage_adapter` (PROTOCOL.md) on a GPU: take a
host-tier buffer of the adapter's packed size (runtime/host_buffers.py: shared memory,
pinned on a GPU, reused by size), and have a staging worker process read, check and pack
the adapter straight into it (runtime/stage_processes.py). Every adapter is its own file,
as many as --count (the ablations trace hard-links 2,000 adapters to 4 files per rank, so
its stages read the page cache). Timed per adapter one at a time (a cold adapter's
latency) and --workers at once (throughput), with the files in the page cache ("warm":
just read) and not ("cold": posix_fadvise DONTNEED on each file first, which drops its
pages where /proc/sys/vm/drop_caches is not writable). The packed rows must equal
`parse_adapter`'s in-process result, byte for byte. `adapter_stage_ms_r32`: the cold
median one at a time, at rank 32 (issue 21's goal: <= 20 ms on the H100's host).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from lorafleet_executor.model.adapters import packed_bytes, parse_adapter, read_adapter_config
from lorafleet_executor.runtime.host_buffers import HostBuffers
from lorafleet_executor.runtime.stage_processes import StageProcesses
from make_adapters import make_adapters
from run_info import REPO, device_folder, run_info
from shapes import SHAPES, model_config

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def evict_from_page_cache(folder: Path) -> None:
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_into_page_cache(folder: Path) -> None:
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (folder / name).read_bytes()


class Stager:
    """The executor's staging path (Executor._parse_into_host_buffer) without the rest."""

    def __init__(self, cfg, workers: int, pin: bool, capacity: int) -> None:
        self.cfg = cfg
        self.buffers = HostBuffers(capacity, shared=True, pin=pin)
        self.stagers = StageProcesses(workers)

    def stage(self, index: int, folder: Path) -> tuple[float, torch.Tensor]:
        """Seconds of one stage, and a copy of its rows (the buffer goes back for reuse)."""
        started = time.perf_counter()
        config = read_adapter_config(folder, self.cfg, 64)
        buffer = self.buffers.take(packed_bytes(config, self.cfg, torch.bfloat16))
        live = self.buffers.live_ids()
        adapter = self.stagers.parse(
            index, folder, self.cfg, 64, torch.bfloat16, config, buffer, live
        )
        seconds = time.perf_counter() - started
        rows = adapter.rows.clone()
        self.buffers.give_back(adapter.rows)
        return seconds, rows


def timed(stager: Stager, folders: list[Path], cold: bool, concurrent: int) -> dict:
    prepare = evict_from_page_cache if cold else read_into_page_cache
    for folder in folders:
        prepare(folder)
    started = time.perf_counter()
    if concurrent == 1:
        results = [stager.stage(i, f) for i, f in enumerate(folders)]
    else:
        with ThreadPoolExecutor(concurrent) as pool:
            results = list(pool.map(lambda i: stager.stage(i, folders[i]), range(len(folders))))
    wall = time.perf_counter() - started
    ms = sorted(seconds * 1e3 for seconds, _ in results)
    return {
        "page_cache": "cold" if cold else "warm",
        "concurrent": concurrent,
        "ms_per_stage": {
            "median": statistics.median(ms),
            "p90": ms[int(0.9 * (len(ms) - 1))],
            "max": ms[-1],
        },
        "adapters_per_s": len(folders) / wall,
        "rows": [rows for _, rows in results],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--count", type=int, default=32, help="distinct adapter files")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--workers", type=int, default=4, help="staging worker processes")
    parser.add_argument("--dir", type=Path, help="keep the adapters here (default: a temp dir)")
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/<device>/)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape, 4 adapters, CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.count, args.workers = "tiny", 4, 2
    shape = SHAPES[args.shape]
    cfg = model_config(shape)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    with tempfile.TemporaryDirectory(prefix="stage-bench-") as tmp:
        root = args.dir or Path(tmp)
        names = [(f"adapter-{i:04d}", args.rank) for i in range(args.count)]
        gen = "cuda" if device.type == "cuda" else "cpu"
        made = make_adapters(shape, names, root, TARGETS, None, 0, gen, args.shape)
        folders = [root / name for name, _ in names]
        expected = parse_adapter(0, folders[0], cfg, 64, torch.bfloat16).rows
        capacity = 2 * args.workers * expected.numel() * expected.element_size()
        stager = Stager(cfg, args.workers, device.type == "cuda", capacity)
        try:
            stager.stage(0, folders[0])  # warm-up: the workers' imports, the first buffer
            runs = [
                timed(stager, folders, cold, concurrent)
                for cold in (False, True)
                for concurrent in (1, args.workers)
            ]
        finally:
            stager.stagers.shutdown()
        for run in runs:
            for folder, rows in zip(folders, run.pop("rows"), strict=True):
                reference = parse_adapter(0, folder, cfg, 64, torch.bfloat16).rows
                if not torch.equal(rows, reference):
                    sys.exit(f"{folder.name}: the staged rows differ from parse_adapter's")
            run["identical_to_parse_adapter"] = True
    cold_one = next(r for r in runs if r["page_cache"] == "cold" and r["concurrent"] == 1)
    result = {
        "bench": "stage",
        **run_info(device),
        "cpu_cores": os.cpu_count(),
        # Other work on the machine skews CPU timings: the 1-minute load when done.
        "load_average_1m": os.getloadavg()[0],
        "shape": args.shape,
        "rank": args.rank,
        "targets": TARGETS,
        "distinct_files": made["distinct_files"],
        "adapter_host_bytes": expected.numel() * expected.element_size(),
        "workers": args.workers,
        "pinned": device.type == "cuda",
        "runs": runs,
        "adapter_stage_ms_r32": cold_one["ms_per_stage"]["median"] if args.rank == 32 else None,
    }
    out = args.out or REPO / "bench" / "results" / device_folder(device) / "stage.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        ms = run["ms_per_stage"]
        print(
            f"{run['page_cache']}, {run['concurrent']} at once: {ms['median']:.1f} ms per stage "
            f"(p90 {ms['p90']:.1f}), {run['adapters_per_s']:.1f} adapters/s"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
