"""Writes synthetic PEFT LoRA adapters (random weights, as the S-LoRA paper's) for a model.

    python bench/gpu/make_adapters.py --model /tmp/llama-2-7b --out /tmp/adapters \
        --trace trace.jsonl --distinct 4
    python bench/gpu/make_adapters.py --model /tmp/llama-2-7b --out /tmp/adapters \
        --count 2000 --ranks 8,16,32,64 --distinct 4
    python bench/gpu/make_adapters.py --smoke --out /tmp/tiny-adapters   # tiny shape, CPU

Each adapter is a folder `<out>/<name>/` with adapter_config.json and
adapter_model.safetensors (bf16; lora_A [r, in] ~ N(0, 1/in), lora_B [out, r] ~
N(0, 0.01/r): a small change of the base output, as a fine-tune makes). Thousands of
7B adapters would not fit a disk (2,000 × ~60 MB), so `--distinct K` writes at most K
different weight files per rank and hard-links the rest: every adapter still has its
own name and folder, and the server loads each one on its own.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from shapes import MODULE_PARENT, SHAPES, LlamaShape, module_features
from trace_file import read_trace

PAPER_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class MakeAdaptersError(Exception):
    pass


def shape_of_model(model: Path) -> LlamaShape:
    config_path = model / "config.json"
    if not config_path.is_file():
        raise MakeAdaptersError(f"no config.json in {model}")
    c = json.loads(config_path.read_text())
    return LlamaShape(
        c["vocab_size"],
        c["hidden_size"],
        c["intermediate_size"],
        c["num_hidden_layers"],
        c["num_attention_heads"],
        c.get("num_key_value_heads", c["num_attention_heads"]),
        c["max_position_embeddings"],
    )


def adapter_config(rank: int, targets: list[str], base: str) -> dict:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": rank,
        "lora_alpha": rank,
        "lora_dropout": 0.0,
        "target_modules": targets,
        "bias": "none",
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "modules_to_save": None,
    }


def adapter_weights(shape: LlamaShape, rank: int, targets: list[str], seed: int, device: str):
    generator = torch.Generator(device=device).manual_seed(seed)
    features = module_features(shape)
    tensors = {}
    for layer in range(shape.num_hidden_layers):
        for module in targets:
            fan_in, fan_out = features[module]
            prefix = f"base_model.model.model.layers.{layer}.{MODULE_PARENT[module]}.{module}"
            a = torch.randn(rank, fan_in, generator=generator, device=device) / math.sqrt(fan_in)
            b = torch.randn(fan_out, rank, generator=generator, device=device) * (0.01 / rank)
            tensors[f"{prefix}.lora_A.weight"] = a.to(torch.bfloat16).cpu().contiguous()
            tensors[f"{prefix}.lora_B.weight"] = b.to(torch.bfloat16).cpu().contiguous()
    return tensors


def _is_complete(folder: Path, config: dict) -> bool:
    """An adapter left by an earlier run with the same config is kept (seeds aside)."""
    config_path = folder / "adapter_config.json"
    if not (config_path.is_file() and (folder / "adapter_model.safetensors").is_file()):
        return False
    return json.loads(config_path.read_text()) == config


def make_adapters(
    shape: LlamaShape,
    adapters: list[tuple[str, int]],
    out: Path,
    targets: list[str],
    distinct: int | None,
    seed: int,
    device: str,
    base_name: str,
) -> dict:
    unknown = sorted(set(targets) - set(MODULE_PARENT))
    if unknown:
        raise MakeAdaptersError(f"unknown target modules {unknown}")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[int, list[Path]] = {}
    skipped = 0
    for index, (name, rank) in enumerate(adapters):
        folder = out / name
        config = adapter_config(rank, targets, base_name)
        weights = folder / "adapter_model.safetensors"
        copies = written.setdefault(rank, [])
        if _is_complete(folder, config):
            skipped += 1
            continue
        folder.mkdir(exist_ok=True)
        weights.unlink(missing_ok=True)
        (folder / "adapter_config.json").unlink(missing_ok=True)
        if distinct is not None and len(copies) >= distinct:
            os.link(copies[index % distinct], weights)
        else:
            tensors = adapter_weights(shape, rank, targets, seed * 1_000_003 + index, device)
            save_file(tensors, str(weights), metadata={"format": "pt"})
            copies.append(weights)
        # The config goes last: its presence marks a complete adapter for the next run.
        (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
        if len(adapters) > 20 and (index + 1) % 100 == 0:
            print(f"[make_adapters] {index + 1}/{len(adapters)}", file=sys.stderr, flush=True)
    return {
        "adapters": len(adapters),
        "distinct_files": sum(len(v) for v in written.values()),
        "kept": skipped,
        "ranks": sorted(written),
        "targets": targets,
        "out": str(out),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help="model directory (its config.json)")
    source.add_argument("--shape", choices=sorted(SHAPES))
    parser.add_argument("--smoke", action="store_true", help="tiny shape, CPU, 4 adapters")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trace", type=Path, help="take adapter names and ranks from a trace")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--ranks", default="8,16,32,64", help="ranks, cycled over --count")
    parser.add_argument("--prefix", default="adapter-")
    parser.add_argument("--targets", default=",".join(PAPER_TARGETS))
    parser.add_argument("--distinct", type=int, help="at most this many weight files per rank")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)
    try:
        if args.model is not None:
            shape, base_name = shape_of_model(args.model), args.model.name
        elif args.shape is not None or args.smoke:
            shape_name = args.shape or "tiny"
            shape, base_name = SHAPES[shape_name], shape_name
        else:
            raise MakeAdaptersError("give --model DIR, --shape NAME or --smoke")
        if args.trace is not None:
            adapters = read_trace(args.trace).adapters
        else:
            ranks = [int(r) for r in args.ranks.split(",")]
            adapters = [(f"{args.prefix}{i:04d}", ranks[i % len(ranks)]) for i in range(args.count)]
        if args.distinct is not None and args.distinct < 1:
            raise MakeAdaptersError("--distinct must be >= 1")
        device = args.device
        if args.smoke:
            device = "cpu"
        elif device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        targets = [t for t in args.targets.split(",") if t]
        summary = make_adapters(
            shape, adapters, args.out, targets, args.distinct, args.seed, device, base_name
        )
    except MakeAdaptersError as error:
        print(f"[make_adapters] error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
