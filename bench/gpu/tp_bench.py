"""Tensor-parallel throughput of the executor's forward pass with many LoRA adapters:
Llama-2-13B shapes on 2 GPUs, Llama-2-70B on 4 or 8, each against fewer GPUs.

    python bench/gpu/tp_bench.py --shape llama-2-13b --tp 1,2
    python bench/gpu/tp_bench.py --shape llama-2-70b --tp 4,8
    python bench/gpu/tp_bench.py --smoke        # tiny shapes, CPU, gloo, seconds

For each group size N it starts N processes (one per GPU, NCCL; gloo on CPU), gives
every rank its share of random weights (N(0, 1/in), as make_model.py) and a pool
holding the KV of the batch and the adapters it uses, then times the real forward
(LlamaModel with the Triton kernels) on a decode batch (B seqs, one token each after C
cached) and a prefill batch, each on the base model alone and with every row on one of
`--num-adapters` adapters (ranks drawn from --ranks, adapter per row drawn zipf(α=1),
all seven modules targeted). Only the batch's adapters are resident, as in S-LoRA; the
rest live in host memory and do not change a step's time. Results: step time, tokens
per second, scaling efficiency (throughput / (N/N₀ × throughput at the smallest N
measured, N₀), with N₀ = 1 where the model fits one GPU) and the share of step time in
communication: the step's time minus the same step with every collective skipped (each
rank computing its share alone; NCCL kernel time from a profiler would also count the
time a rank waits for the slowest one), with and
without adapters. Weight contents do not matter for speed; no model directory is read.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lorafleet_executor.model.adapter_layout import MODULES, adapter_layout
from lorafleet_executor.model.config import ModelConfig
from lorafleet_executor.model.forward_batch import ForwardBatch
from lorafleet_executor.model.llama import LlamaModel
from lorafleet_executor.model.lora_batch import PlacedAdapter, mixed_segments, pack_lora_batch
from lorafleet_executor.model.pool import UnifiedPool
from lorafleet_executor.model.upload import Packing, StepUpload
from lorafleet_executor.model.weights import LayerWeights, ModelWeights
from lorafleet_executor.parallel.group import TensorGroup
from lorafleet_executor.parallel.launch import run_group
from run_info import device_folder, run_info
from shapes import SHAPES, LlamaShape, model_config

REPO = Path(__file__).resolve().parents[2]
ALL_SHAPES = SHAPES | {"llama-2-70b": LlamaShape(32000, 8192, 28672, 80, 64, 8, 4096)}
WORKLOAD_FIELDS = (
    "num_adapters",
    "ranks",
    "modules",
    "batch",
    "context",
    "prefill_seqs",
    "prefill_len",
    "steps",
    "seed",
)


def weight_bytes(cfg: ModelConfig, dtype: torch.dtype) -> int:
    shapes = cfg.module_shapes()
    per_layer = sum(i * o for i, o in shapes.values()) + 2 * cfg.hidden_size
    total = cfg.num_layers * per_layer + 2 * cfg.vocab_size * cfg.hidden_size
    return total * torch.empty(0, dtype=dtype).element_size()


def random_weights(cfg: ModelConfig, tp: TensorGroup, dtype, device) -> ModelWeights:
    """This rank's share, generated in place: only shapes matter for speed."""
    local = tp.shard.local_config(cfg)
    shapes = local.module_shapes()

    def linear(out: int, fan_in: int) -> torch.Tensor:
        return (torch.randn(out, fan_in, device=device) / math.sqrt(fan_in)).to(dtype)

    def ones() -> torch.Tensor:
        return torch.ones(cfg.hidden_size, dtype=dtype, device=device)

    qkv_out = sum(shapes[m][1] for m in "qkv")
    layers = [
        LayerWeights(
            input_norm=ones(),
            qkv=linear(qkv_out, cfg.hidden_size),
            qkv_bias=None,
            o=linear(cfg.hidden_size, shapes["o"][0]),
            post_norm=ones(),
            gate_up=linear(2 * local.intermediate_size, cfg.hidden_size),
            down=linear(cfg.hidden_size, local.intermediate_size),
        )
        for _ in range(cfg.num_layers)
    ]
    vocab = tp.shard.vocab_shard_size(cfg.vocab_size)
    return ModelWeights(
        embed=linear(vocab, cfg.hidden_size),
        layers=layers,
        norm=ones(),
        lm_head=linear(vocab, cfg.hidden_size),
    )


class Workload:
    """The batches of one run; the same numbers on every rank (one seed)."""

    def __init__(self, args: argparse.Namespace, cfg: ModelConfig, local: ModelConfig) -> None:
        rng = np.random.default_rng(args.seed)
        ranks = rng.choice(args.ranks, size=args.num_adapters)
        zipf = 1.0 / np.arange(1, args.num_adapters + 1)
        self.rows_adapter = {
            kind: rng.choice(args.num_adapters, size=n, p=zipf / zipf.sum())
            for kind, n in (("decode", args.batch), ("prefill", args.prefill_seqs))
        }
        used = sorted(set(np.concatenate(list(self.rows_adapter.values())).tolist()))
        shapes, width = local.module_shapes(), local.page_width
        self.adapters: dict[int, PlacedAdapter] = {}
        cursor = 0
        for a in used:
            spans, n = adapter_layout(int(ranks[a]), args.modules, shapes, width)
            pages = np.arange(cursor, cursor + n, dtype=np.int32)
            self.adapters[a] = PlacedAdapter(a, int(ranks[a]), spans, pages)
            cursor += n
        self.adapter_pages = cursor
        self.kv_start = cursor
        kv_tokens = args.batch * (args.context + 1) + args.prefill_seqs * args.prefill_len
        self.num_pages = cursor + 2 * kv_tokens
        self.ranks_used = sorted({int(ranks[a]) for a in used})
        self.args, self.cfg, self.local = args, cfg, local

    def batch(self, kind: str, with_lora: bool, device: torch.device) -> ForwardBatch:
        """ "decode" (B seqs, one token each after C cached), "prefill" (the prefill seqs
        from scratch) or "mixed" (both in one step, as continuous batching runs them)."""
        args = self.args
        # (seqs, new tokens each, context each, first KV page) of each part
        parts = {
            "decode": (args.batch, 1, args.context + 1, self.kv_start),
            "prefill": (
                args.prefill_seqs,
                args.prefill_len,
                args.prefill_len,
                self.kv_start + 2 * args.batch * (args.context + 1),
            ),
        }
        names = ["decode", "prefill"] if kind == "mixed" else [kind]
        width = max(parts[name][2] for name in names)
        tables, k_pages, positions, new_per_seq, ctx_lens, adapters = [], [], [], [], [], []
        for name in names:
            seqs, new, ctx, first = parts[name]
            # seq s's token i has K page first + 2·(s·ctx + i), V page the next
            table = first + 2 * (np.arange(seqs)[:, None] * ctx + np.arange(ctx)[None, :])
            tables.append(np.pad(table, ((0, 0), (0, width - ctx))))
            k_pages.append(table[:, ctx - new :].reshape(-1))
            positions.append(np.tile(np.arange(ctx - new, ctx), seqs))
            new_per_seq += [new] * seqs
            ctx_lens += [ctx] * seqs
            adapters.append(self.rows_adapter[name])
        k_table = np.concatenate(tables)
        new_per_seq = np.array(new_per_seq)
        cu_q = np.concatenate([[0], np.cumsum(new_per_seq)])
        lora = None
        if with_lora:
            seq_adapter = np.concatenate(adapters)
            slot_of = {a: i for i, a in enumerate(dict.fromkeys(seq_adapter.tolist()))}
            row_slot = np.repeat([slot_of[a] for a in seq_adapter.tolist()], new_per_seq)
            row_slot = row_slot.astype(np.int32)
            lead_rows, segments = 0, None
            if new_per_seq.max() > 1:  # decode rows first, then runs, as the executor
                lead_rows, segments = mixed_segments(row_slot, cu_q)
            packing = Packing()
            made = pack_lora_batch(
                [self.adapters[a] for a in slot_of],
                row_slot,
                segments,
                self.local.module_shapes(),
                self.local.page_width,
                packing,
                lead_rows=lead_rows,
            )
            lora = made(StepUpload(device).send(packing))  # its own upload: the batch is kept

        def dev(a: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

        rng = np.random.default_rng(1)
        k_pages = np.concatenate(k_pages)
        return ForwardBatch(
            token_ids=dev(rng.integers(3, self.cfg.vocab_size, int(cu_q[-1])), torch.int64),
            positions=dev(np.concatenate(positions), torch.int64),
            k_pages=dev(k_pages, torch.int32),
            v_pages=dev(k_pages + 1, torch.int32),
            k_table=dev(k_table, torch.int32),
            v_table=dev(k_table + 1, torch.int32),
            cu_q=dev(cu_q, torch.int32),
            ctx_lens=dev(np.array(ctx_lens), torch.int32),
            max_q=int(new_per_seq.max()),
            logits_rows=dev(cu_q[1:] - 1, torch.int64),
            lora=lora,
        )


def bench_rank(tp: TensorGroup, args: argparse.Namespace) -> dict:
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(args.seed + tp.rank)
    tp.bind(device)
    cfg = model_config(ALL_SHAPES[args.shape])
    local = tp.shard.local_config(cfg)
    work = Workload(args, cfg, local)
    backend = "triton" if device.type == "cuda" else "torch"
    weights = random_weights(cfg, tp, dtype, device)
    # N = 1 runs the single-GPU code path itself, with no group in the forward pass.
    group = tp if tp.size > 1 else None
    model = LlamaModel(local, weights, backend, backend, group, cfg.vocab_size)
    pool = UnifiedPool(cfg.num_layers, work.num_pages, local.page_width, dtype, device)
    pool.data.normal_(0, 0.02)  # adapter rows and cached KV: any finite values time alike
    out: dict = {"tp": tp.size, "pool_pages": work.num_pages, "adapter_pages": work.adapter_pages}
    for kind in ("decode", "prefill"):
        tokens = args.batch if kind == "decode" else args.prefill_seqs * args.prefill_len
        out[kind] = {}
        for label, with_lora in (("base", False), ("lora", True)):
            batch = work.batch(kind, with_lora, device)
            step_s = _time_steps(model, pool, batch, args.warmup, args.steps, device)
            comm_s = _comm_seconds(model, pool, batch, args.warmup, args.steps, device, step_s)
            out[kind][label] = {
                "step_ms": step_s * 1e3,
                "tokens_per_s": tokens / step_s,
                "comm_ms": comm_s * 1e3,
                "comm_share": comm_s / step_s,
            }
    out["adapters_in_batch"] = len(work.adapters)
    out["ranks_in_batch"] = work.ranks_used
    return out


def sync_device(device: torch.device) -> None:
    """Waits for the GPU's queued work (timings); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(model, pool, batch, warmup: int, steps: int, device) -> float:
    for _ in range(warmup):
        model.forward(pool, batch)
    sync_device(device)
    started = time.perf_counter()
    for _ in range(steps):
        model.forward(pool, batch)
    sync_device(device)
    return (time.perf_counter() - started) / steps


class WithoutCollectives:
    """The model's group with every collective skipped: each rank computes its share alone
    (wrong numbers, right work), so the step time it gives excludes communication."""

    def __init__(self, group: TensorGroup) -> None:
        self.shard = group.shard

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def embed(self, table: torch.Tensor, token_ids: torch.Tensor, vocab_size: int):
        start, _ = self.shard.vocab_range(vocab_size)
        rows = (token_ids - start).clamp(0, table.shape[0] - 1)
        return table[rows]

    def gather_logits(self, local: torch.Tensor, vocab_size: int) -> torch.Tensor:
        return local


def _comm_seconds(model, pool, batch, warmup: int, steps: int, device, step_s: float) -> float:
    """Step time with the collectives minus without them (0 without a group)."""
    if model.tp is None:
        return 0.0
    group, model.tp = model.tp, WithoutCollectives(model.tp)
    try:
        alone_s = _time_steps(model, pool, batch, warmup, steps, device)
    finally:
        model.tp = group
    return max(0.0, step_s - alone_s)


def add_scaling(runs: list[dict]) -> None:
    """Each run's throughput / (N/N₀ × the smallest group's), N₀ that group's size."""
    base = min(runs, key=lambda r: r["tp"])
    for run in runs:
        run["scaling_vs_tp"] = base["tp"]
        for kind in ("decode", "prefill"):
            for label in ("base", "lora"):
                ratio = run["tp"] / base["tp"]
                got = run[kind][label]["tokens_per_s"] / base[kind][label]["tokens_per_s"]
                run[kind][label]["scaling_efficiency"] = got / ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(ALL_SHAPES), default="llama-2-13b")
    parser.add_argument("--tp", default="1,2", help="group sizes, comma-separated")
    parser.add_argument("--num-adapters", type=int, default=1000)
    parser.add_argument("--ranks", default="8,16,32,64")
    parser.add_argument("--modules", default=",".join(MODULES), help="targeted, comma-separated")
    parser.add_argument("--batch", type=int, default=32, help="decode sequences")
    parser.add_argument("--context", type=int, default=512, help="cached tokens per decode seq")
    parser.add_argument("--prefill-seqs", type=int, default=4)
    parser.add_argument("--prefill-len", type=int, default=512)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/<device>/)")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (gloo)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.shape, args.tp, args.num_adapters = "tiny", "1,2", 40
        args.batch, args.context, args.prefill_seqs, args.prefill_len = 4, 16, 2, 8
        args.warmup, args.steps = 1, 2
    args.ranks = [int(r) for r in args.ranks.split(",")]
    args.modules = args.modules.split(",")
    sizes = sorted({int(n) for n in args.tp.split(",")})
    cfg = model_config(ALL_SHAPES[args.shape])
    on_gpu = torch.cuda.is_available() and not args.smoke
    fits_one = True
    if on_gpu:
        if max(sizes) > torch.cuda.device_count():
            sys.exit(f"--tp {max(sizes)} needs {max(sizes)} GPUs; {torch.cuda.device_count()} seen")
        budget = 0.8 * torch.cuda.get_device_properties(0).total_memory
        fits_one = weight_bytes(cfg, torch.bfloat16) <= budget
        skipped = [n for n in sizes if weight_bytes(cfg, torch.bfloat16) / n > budget]
        for n in skipped:
            print(f"tp={n}: {args.shape} weights do not fit {n} GPU(s); skipped", file=sys.stderr)
        sizes = [n for n in sizes if n not in skipped]
    runs = []
    for n in sizes:
        print(f"tp={n}: {args.shape} ...", file=sys.stderr, flush=True)
        runs.append(run_group(bench_rank, n, args, timeout=1800)[0])
    add_scaling(runs)
    device = torch.device("cuda" if on_gpu else "cpu")
    result = {
        "bench": "tp",
        **run_info(device),
        "shape": args.shape,
        "dtype": "bfloat16" if on_gpu else "float32",
        "fits_one_gpu": fits_one,
        "workload": {k: getattr(args, k) for k in WORKLOAD_FIELDS},
        "runs": runs,
    }
    out = args.out or REPO / "bench" / "results" / device_folder(device) / f"tp-{args.shape}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        d, p = run["decode"], run["prefill"]
        print(
            f"tp={run['tp']}: decode {d['base']['tokens_per_s']:.0f} -> "
            f"{d['lora']['tokens_per_s']:.0f} tok/s with adapters "
            f"(comm {d['base']['comm_share']:.0%} / {d['lora']['comm_share']:.0%}, "
            f"scaling {d['lora']['scaling_efficiency']:.2f}); prefill "
            f"{p['lora']['tokens_per_s']:.0f} tok/s with adapters"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
