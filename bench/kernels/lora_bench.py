"""LoRA kernel micro-benchmark: our paged kernels vs S-LoRA's gather-and-bmm baseline.

For fused q/k/v of Llama-2-7B shapes (in 4096, out 3 x 4096, page width W 4096) and a
grid of rows (1..256), distinct adapters (1..256) and ranks (8..128, uniform or mixed),
it times one shrink + expand over pool pages against the "bmm" baseline (gather each
row's A and Bᵀ from the pool into dense tensors, then torch.bmm), next to the base
q/k/v GEMM, and prefill (segments of 1,024 and 4,096 tokens over 8 adapters).

Each measurement is validated first (ours vs bmm), then timed as the decode step runs
it: captured in a CUDA graph, replayed `--inner` times between two CUDA events, the
median of `--repeats` such samples, per call in microseconds. Results go to --out as
JSON; progress to stderr.

    python bench/kernels/lora_bench.py --out bench/results/lora_kernels_h100.json
    python bench/kernels/lora_bench.py --smoke --out /tmp/lora_smoke.json   # CPU, tiny
"""

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import triton
from lorafleet_executor.kernels import lora_expand, lora_shrink

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gpu"))
from run_info import git_sha  # noqa: E402


@dataclass
class Shapes:
    in_features: int
    out_features: list[int]
    page_width: int


LLAMA7B = Shapes(4096, [4096, 4096, 4096], 4096)
TINY = Shapes(64, [64, 32, 32], 32)


@dataclass
class Case:
    """Pool, page tables and inputs of one benchmark point, built on the device."""

    x: torch.Tensor
    y: torch.Tensor
    pool: torch.Tensor
    a_pages: torch.Tensor
    b_pages: torch.Tensor
    ranks: torch.Tensor
    row_slot: torch.Tensor
    segments: tuple[torch.Tensor, torch.Tensor] | None
    shapes: Shapes


def build_case(shapes, rows, slot_ranks, row_slot, segments, dtype, device, gen) -> Case:
    """Every adapter row at its own random page of a pool that holds exactly them."""
    m, s, r = len(shapes.out_features), len(slot_ranks), max(slot_ranks)
    per_a = triton.cdiv(shapes.in_features, shapes.page_width)
    per_b = triton.cdiv(max(shapes.out_features), shapes.page_width)
    num_pages = m * s * r * (per_a + per_b)
    order = torch.randperm(num_pages, generator=gen).to(torch.int32).to(device)
    a_pages = order[: m * s * r * per_a].view(m, s, r, per_a).contiguous()
    b_pages = order[m * s * r * per_a :].view(m, s, r, per_b).contiguous()
    pool = (torch.randn(num_pages, shapes.page_width, device=device) * 0.02).to(dtype)
    ranks = torch.tensor([slot_ranks] * m, dtype=torch.int32, device=device)
    x = torch.randn(rows, shapes.in_features, device=device).to(dtype)
    y = torch.zeros(rows, sum(shapes.out_features), device=device, dtype=dtype)
    return Case(x, y, pool, a_pages, b_pages, ranks, row_slot.to(device), segments, shapes)


def ours(case: Case, backend: str) -> None:
    h = lora_shrink(
        case.x, case.pool, case.a_pages, case.ranks, case.row_slot,
        segments=case.segments, backend=backend, validate=False,
    )  # fmt: skip
    lora_expand(
        case.y, h, case.pool, case.b_pages, case.ranks, case.row_slot, case.shapes.out_features,
        segments=case.segments, backend=backend, validate=False,
    )  # fmt: skip


def bmm_baseline(case: Case) -> None:
    """S-LoRA's "bmm": gather each row's padded A and Bᵀ into dense tensors, then bmm."""
    rows = case.x.shape[0]
    slot = case.row_slot.clamp(min=0).long()
    has = (case.row_slot >= 0)[:, None]
    r = case.a_pages.shape[2]
    col = 0
    for m, out in enumerate(case.shapes.out_features):
        a = case.pool[case.a_pages[m, slot].long()].view(rows, r, -1)[..., : case.x.shape[1]]
        h = torch.bmm(a, case.x[:, :, None]).squeeze(2)  # [T, R]
        keep = torch.arange(r, device=h.device)[None, :] < case.ranks[m, slot][:, None]
        h = h * (keep & has)
        bt = case.pool[case.b_pages[m, slot].long()].view(rows, r, -1)[..., :out]
        case.y[:, col : col + out] += torch.bmm(h[:, None, :], bt).squeeze(1)
        col += out


def time_us(fn, device, repeats: int, inner: int) -> float:
    """Median per-call time; on CUDA fn is replayed from a CUDA graph between events."""
    fn()  # compile / warm up outside any capture
    if device.type != "cuda":
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - start) / inner * 1e6)
        return statistics.median(samples)
    torch.cuda.synchronize()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    graph.replay()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            graph.replay()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1e3 / inner)
    return statistics.median(samples)


def validate(case: Case, backend: str, dtype) -> float:
    """Max |ours - bmm| over y, both from zero; raises when they disagree."""
    case.y.zero_()
    ours(case, backend)
    mine = case.y.float().clone()
    case.y.zero_()
    bmm_baseline(case)
    err = (mine - case.y.float()).abs().max().item()
    scale = case.y.float().abs().max().item() + 1e-6
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    if err > tol * max(1.0, scale):
        raise AssertionError(f"ours and bmm disagree: max error {err} (|y| up to {scale})")
    return err


def decode_points(smoke: bool):
    if smoke:
        return [(rows, n, ranks) for rows in (1, 3) for n in (1, 2) for ranks in ((8,), (4, 8))]
    points = []
    rank_sets = [(8,), (16,), (32,), (64,), (128,), (8, 16, 32, 64)]
    for rows in (1, 8, 32, 64, 128, 256):
        for n in sorted({1, 8, 64, 256, rows}):
            if n <= rows:
                points.extend((rows, n, ranks) for ranks in rank_sets)
    return points


def prefill_points(smoke: bool):
    if smoke:
        return [(16, 2, (8,))]
    return [(tokens, 8, ranks) for tokens in (1024, 4096) for ranks in ((16,), (8, 16, 32, 64))]


def base_gemm_us(shapes: Shapes, rows, dtype, device, repeats, inner) -> float:
    x = torch.randn(rows, shapes.in_features, device=device).to(dtype)
    w = torch.randn(shapes.in_features, sum(shapes.out_features), device=device).to(dtype)
    out = torch.empty(rows, sum(shapes.out_features), device=device, dtype=dtype)
    return time_us(lambda: torch.mm(x, w, out=out), device, repeats, inner)


def run(args) -> dict:
    device = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    backend = "torch" if args.smoke else "triton"
    shapes = TINY if args.smoke else LLAMA7B
    repeats, inner = (2, 1) if args.smoke else (args.repeats, args.inner)
    gen = torch.Generator().manual_seed(0)
    results = []
    gemm_cache: dict[int, float] = {}

    def measure(kind, rows, n, ranks, row_slot, segments):
        slot_ranks = [ranks[i % len(ranks)] for i in range(n)]
        case = build_case(shapes, rows, slot_ranks, row_slot, segments, dtype, device, gen)
        err = validate(case, backend, dtype)
        if rows not in gemm_cache:
            gemm_cache[rows] = base_gemm_us(shapes, rows, dtype, device, repeats, inner)
        point = {
            "kind": kind,
            "rows": rows,
            "adapters": n,
            "ranks": list(ranks),
            "ours_us": time_us(lambda: ours(case, backend), device, repeats, inner),
            "bmm_us": time_us(lambda: bmm_baseline(case), device, repeats, inner),
            "base_qkv_gemm_us": gemm_cache[rows],
            "max_abs_diff_vs_bmm": err,
        }
        point["bmm_over_ours"] = point["bmm_us"] / point["ours_us"]
        results.append(point)
        print(
            f"{kind:7s} rows={rows:5d} adapters={n:3d} ranks={ranks}: ours {point['ours_us']:.1f}"
            f" us, bmm {point['bmm_us']:.1f} us, base qkv gemm {point['base_qkv_gemm_us']:.1f} us",
            file=sys.stderr,
        )
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for rows, n, ranks in decode_points(args.smoke):
        row_slot = (torch.arange(rows) % n).to(torch.int32)
        measure("decode", rows, n, ranks, row_slot, None)
    for tokens, n, ranks in prefill_points(args.smoke):
        row_slot = (torch.arange(tokens) * n // tokens).to(torch.int32)  # n equal runs
        starts = (torch.arange(n + 1) * tokens // n).to(torch.int32).to(device)
        segments = (starts, torch.arange(n, dtype=torch.int32, device=device))
        measure("prefill", tokens, n, ranks, row_slot, segments)
    headline = next(
        (
            p["ours_us"]
            for p in results
            if p["kind"] == "decode" and p["rows"] == 64 and p["adapters"] == 64
            and p["ranks"] == [16]
        ),
        None,
    )  # fmt: skip
    return {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "triton": triton.__version__,
        "git_sha": git_sha(),
        "command": " ".join(sys.argv),
        "dtype": str(dtype),
        "shapes": asdict(shapes),
        "repeats": repeats,
        "inner": inner,
        "lora_kernel_64x64_r16_us": headline,
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="where the JSON results go")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, CPU, torch backend")
    parser.add_argument("--repeats", type=int, default=15, help="timing samples (median)")
    parser.add_argument("--inner", type=int, default=20, help="graph replays per sample")
    args = parser.parse_args(argv)
    report = run(args)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {args.out} ({len(report['results'])} points)", file=sys.stderr)


if __name__ == "__main__":
    main()
