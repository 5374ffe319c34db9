"""FP8 base weights against bf16 at decode, side by side in one process (issue 24):
Llama-2-7B shapes, batch 64 and 128, 512 cached tokens each.

    python bench/gpu/fp8_decode.py --out $OUT/fp8_decode.json
    python bench/gpu/fp8_decode.py --smoke --out /tmp/fp8.json   # tiny shape, CPU, seconds

Variants, each the executor's real forward (LlamaModel, Triton attention and norms), timed
eagerly and replayed as one CUDA graph (roofline.py's timing):
  bf16         the dense model (random weights: only shapes matter)
  fp8          its q k v o gate up down quantized per output channel at load, as
               `--quantization fp8` does, activations per token, multiplied by the GEMM
               the executor uses (torch._scaled_mm, runtime/init_config.py CUDA_FP8_GEMM)
  fp8-triton   the same weights through our Triton FP8 GEMM
  fp8-block    128x128 block scales (block-quantized checkpoints), the Triton GEMM
On CPU (--smoke) "bf16" is the float32 model and "fp8" the reference GEMM.
With --adapters N (default 2,000) bf16 and fp8 decode again with every row on
one of N q/k/v/o adapters (roofline.py's workload): `lora.vs_base` per variant.

Bytes: a decode step reads every resident weight once (of the embedding only the batch's
rows; FP8 weights a byte each plus their float32 scales) and K and V of every cached
token, so its floor is those bytes / 3.02e12 B/s (the H100's copy bandwidth; --bandwidth).
Pool pages: `runtime/memory_budget.py`'s sizing at the backend's defaults
(gpu_memory_utilization 0.9, 2048 batched tokens, 128 sequences, rank 64, CUDA graphs),
run with each model's weights alone on the GPU; on CPU (--smoke), where the budget does
not see the weights, the weight bytes saved over a page's bytes.

Keys: fp8_decode_vs_bf16 (the worse batch of fp8's output tokens/s over bf16's, each at
its better mode; the issue asks >= 1.6), fp8_roofline_fraction (the worse batch of fp8's
floor / step time; >= 0.75), fp8_pool_pages_gained; each run names its fastest FP8
variant (`fastest_fp8`), should the other GEMM be the one to serve.
"""

import argparse
import json
import time

import torch
from lorafleet_executor.kernels.fp8_quant import quantize_blocks_reference
from lorafleet_executor.model.linear import Fp8Weight, quantize_weight
from lorafleet_executor.model.llama import LlamaModel
from lorafleet_executor.model.pool import UnifiedPool, page_bytes
from lorafleet_executor.model.weights import ModelWeights
from lorafleet_executor.runtime.init_config import CUDA_FP8_GEMM
from lorafleet_executor.runtime.memory_budget import pages_from_memory
from roofline import OneRank, best, decode_arguments, parse_decode_arguments, time_decode
from run_info import REPO, device_folder, run_info
from shapes import SHAPES, model_config
from tp_bench import Workload, random_weights

PROJECTIONS = ("qkv", "o", "gate_up", "down")
# the backend's defaults (gpu-backend/src/server/config.ts)
SERVING = {"gpu_memory_utilization": 0.9, "max_num_batched_tokens": 2048, "max_num_seqs": 128,
           "max_lora_rank": 64}  # fmt: skip


def quantized(weights: ModelWeights, gemm: str, block: tuple[int, int] | None) -> ModelWeights:
    """The projections in FP8 (per channel, or per block), the rest shared with `weights`."""
    layers = []
    for layer in weights.layers:
        fp8 = {}
        for name in PROJECTIONS:
            w = getattr(layer, name)
            dense = w.dequantized().to(weights.embed.dtype) if isinstance(w, Fp8Weight) else w
            if block is None:
                fp8[name] = quantize_weight(dense, gemm)
            else:
                q, scale = quantize_blocks_reference(dense, block)
                fp8[name] = Fp8Weight(q, scale, block, gemm)
            del dense
        layers.append(type(layer)(**{**vars(layer), **fp8}))
    return ModelWeights(weights.embed, layers, weights.norm, weights.lm_head)


def with_gemm(weights: ModelWeights, gemm: str) -> ModelWeights:
    """The same FP8 tensors, multiplied by another GEMM."""
    layers = [
        type(layer)(**{**vars(layer), **{
            name: Fp8Weight(w.weight, w.scale, w.block, gemm)
            for name in PROJECTIONS
            for w in [getattr(layer, name)]
        }})
        for layer in weights.layers
    ]  # fmt: skip
    return ModelWeights(weights.embed, layers, weights.norm, weights.lm_head)


def floor_bytes(weights: ModelWeights, cfg, batch: int, context: int, dtype) -> dict:
    """Bytes one decode step must read: the resident weights but the embedding rows no
    token of the batch gathers, and K and V of every cached token and the new one."""
    element = torch.empty(0, dtype=dtype).element_size()
    kv = 2 * cfg.num_layers * batch * (context + 1) * cfg.page_width * element
    unread = (cfg.vocab_size - batch) * cfg.hidden_size * element
    read = weights.nbytes() - unread
    return {"weight_bytes": read, "kv_bytes": kv, "total_bytes": read + kv}


def pool_pages(model: LlamaModel, cfg, dtype, device) -> int | None:
    """The executor's pool size with this model alone on the GPU; None on CPU, whose
    budget is a share of the host's free memory (the weights do not enter it)."""
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    return pages_from_memory(model, cfg, **SERVING, dtype=dtype, device=device, graphs=True)


class Timing:
    """The decode batches of one run and how to time a model on them."""

    def __init__(self, args: argparse.Namespace, cfg, dtype, device) -> None:
        self.args, self.cfg, self.dtype, self.device = args, cfg, dtype, device
        self.modes = ["eager", "graph"] if device.type == "cuda" else ["eager"]

    def decode(self, models: dict[str, LlamaModel], runs: list[dict]) -> None:
        """Fills run[name] for every batch's run: each model on one pool of KV pages."""
        args, cfg = self.args, self.cfg
        for run in runs:
            work_args = argparse.Namespace(
                seed=0, ranks=[int(r) for r in args.ranks.split(",")],
                num_adapters=max(1, args.adapters), modules=args.modules.split(","),
                batch=run["batch"], context=args.context, prefill_seqs=1, prefill_len=1,
            )  # fmt: skip
            work = Workload(work_args, cfg, cfg)
            pool = UnifiedPool(
                cfg.num_layers, work.num_pages, cfg.page_width, self.dtype, self.device
            )
            pool.data.normal_(0, 0.02)
            for name, model in models.items():
                floor = floor_bytes(model.weights, cfg, run["batch"], args.context, self.dtype)
                timed = floor | self._timed(
                    model, pool, work.batch("decode", False, self.device), floor
                )
                if args.adapters > 0 and name in ("bf16", "fp8"):
                    lora = self._timed(model, pool, work.batch("decode", True, self.device), floor)
                    lora["vs_base"] = best(lora, "tokens_per_s") / best(timed, "tokens_per_s")
                    timed["lora"] = lora
                run[name] = timed
            del pool

    def _timed(self, model, pool, batch, floor) -> dict:
        timed = {}
        for mode in self.modes:
            try:
                step_s = time_decode(model, pool, batch, self.args.warmup, self.args.steps,
                                     self.device, mode == "graph")  # fmt: skip
            except RuntimeError as error:  # e.g. a kernel that cannot be captured
                timed[mode] = {"error": f"{type(error).__name__}: {error}"}
                continue
            timed[mode] = {
                "step_ms": step_s * 1e3,
                "tokens_per_s": batch.token_ids.shape[0] / step_s,
                "achieved_bytes_per_s": floor["total_bytes"] / step_s,
                "roofline_fraction": floor["total_bytes"] / self.args.bandwidth / step_s,
            }
        return timed


def main(argv: list[str] | None = None) -> None:
    args = parse_decode_arguments(decode_arguments(__doc__.split("\n\n")[0]), argv)
    if args.smoke:
        args.adapters = min(args.adapters, 8)
    on_gpu = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if on_gpu else "cpu")
    dtype = torch.bfloat16 if on_gpu else torch.float32
    kernels = "triton" if on_gpu else "torch"
    torch.manual_seed(0)
    cfg = model_config(SHAPES[args.shape])
    page = page_bytes(cfg.num_layers, cfg.page_width, dtype)

    def model_of(weights: ModelWeights) -> LlamaModel:
        return LlamaModel(cfg, weights, kernels, kernels)

    started = time.perf_counter()
    dense = model_of(random_weights(cfg, OneRank(), dtype, device))
    pages = {"bf16": pool_pages(dense, cfg, dtype, device)}
    per_channel = quantized(dense.weights, CUDA_FP8_GEMM if on_gpu else "torch", None)
    variants = {"bf16": dense, "fp8": model_of(per_channel)}
    if on_gpu:
        variants["fp8-triton"] = model_of(with_gemm(per_channel, "triton"))
    weight_bytes = {name: m.weights.nbytes() for name, m in variants.items()}
    runs = [{"batch": int(b), "context": args.context} for b in args.batches.split(",")]
    timing = Timing(args, cfg, dtype, device)
    timing.decode(variants, runs)
    # FP8 pool sizing with the FP8 weights alone on the device
    del variants["bf16"], dense
    if on_gpu:
        del variants["fp8-triton"]
    fp8_model = variants["fp8"]
    pages["fp8"] = pool_pages(fp8_model, cfg, dtype, device)
    if on_gpu:
        block = model_of(quantized(fp8_model.weights, "triton", (128, 128)))
        del variants, fp8_model, per_channel
        weight_bytes["fp8-block"] = block.weights.nbytes()
        timing.decode({"fp8-block": block}, runs)
    saved = weight_bytes["bf16"] - weight_bytes["fp8"]
    gained = pages["fp8"] - pages["bf16"] if on_gpu else saved // page

    fp8_names = [n for n in ("fp8", "fp8-triton", "fp8-block") if n in runs[0]]
    for run in runs:
        bf16_rate = best(run["bf16"], "tokens_per_s")
        for name in fp8_names:
            run[name]["vs_bf16"] = best(run[name], "tokens_per_s") / bf16_rate
        run["fastest_fp8"] = max(fp8_names, key=lambda n: run[n]["vs_bf16"])
    result = {
        "bench": "fp8_decode",
        **run_info(device),
        "shape": args.shape,
        "dtype": str(dtype).removeprefix("torch."),
        "bandwidth_bytes_per_s": args.bandwidth,
        "steps": args.steps,
        "weight_bytes": weight_bytes,
        "page_bytes": page,
        "pool_pages": pages,
        "pool_pages_source": (
            "memory_budget.pages_from_memory at the backend's defaults, each model alone"
            if on_gpu
            else "CPU: weight bytes saved / page bytes"
        ),
        "runs": runs,
        "seconds": time.perf_counter() - started,
        # the headline is what --quantization fp8 serves ("fp8"); each run also names
        # the fastest FP8 variant, should the other GEMM win
        "fp8_decode_vs_bf16": min(run["fp8"]["vs_bf16"] for run in runs),
        "fp8_roofline_fraction": min(best(run["fp8"], "roofline_fraction") for run in runs),
        "fp8_pool_pages_gained": int(gained),
    }
    out = args.out or REPO / "bench" / "results" / device_folder(device) / "fp8_decode.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    for run in runs:
        cells = [
            f"{n} {best(run[n], 'tokens_per_s'):.0f} tok/s "
            f"(roofline {best(run[n], 'roofline_fraction'):.2f})"
            for n in ["bf16", *fp8_names]
        ]
        print(f"batch {run['batch']}: " + "; ".join(cells))
    print(
        f"fp8 vs bf16 x{result['fp8_decode_vs_bf16']:.2f}, roofline "
        f"{result['fp8_roofline_fraction']:.2f}, pool pages +{gained} ({pages})"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
