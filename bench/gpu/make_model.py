"""Writes a Llama-2-7B/13B-shaped HF model directory with random weights, as the S-LoRA
paper's benchmarks use: only the shapes and bytes moved matter for speed.

    python bench/gpu/make_model.py --shape llama-2-7b --out /tmp/llama-2-7b
    python bench/gpu/make_model.py --smoke --out /tmp/tiny   # tiny shape on CPU, seconds

Weights are generated on the GPU when there is one (seeded: the same seed gives the same
model on the same device kind), saved as bf16 safetensors shards. Linear weights are
N(0, 1/in) so activations keep unit scale through the layers instead of collapsing (HF's
0.02 init) or blowing up in bf16. The tokenizer is a small byte-level BPE (the tiny
fixture's) padded with filler tokens to the model's vocab size, so every sampled id
decodes; prompts are token id lists, so the small vocabulary does not limit them.
"""

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from lorafleet_executor.fixtures.llama_config import SpecialTokenIds, write_llama_config
from safetensors.torch import save_file
from shapes import SHAPES, LlamaShape

REPO = Path(__file__).resolve().parents[2]
DEFAULT_TOKENIZER = REPO / ".cache" / "fixtures" / "tiny-llama"
SHARD_BYTES = 4 << 30
BOS, EOS = 1, 2


class MakeModelError(Exception):
    pass


def tensor_plan(shape: LlamaShape) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, kind) of every weight, kind in linear | norm | embed."""
    h, i = shape.hidden_size, shape.intermediate_size
    kv = shape.num_key_value_heads * shape.head_dim
    plan: list[tuple[str, tuple[int, ...], str]] = [
        ("model.embed_tokens.weight", (shape.vocab_size, h), "embed")
    ]
    for layer in range(shape.num_hidden_layers):
        p = f"model.layers.{layer}"
        plan += [
            (f"{p}.input_layernorm.weight", (h,), "norm"),
            (f"{p}.self_attn.q_proj.weight", (h, h), "linear"),
            (f"{p}.self_attn.k_proj.weight", (kv, h), "linear"),
            (f"{p}.self_attn.v_proj.weight", (kv, h), "linear"),
            (f"{p}.self_attn.o_proj.weight", (h, h), "linear"),
            (f"{p}.post_attention_layernorm.weight", (h,), "norm"),
            (f"{p}.mlp.gate_proj.weight", (i, h), "linear"),
            (f"{p}.mlp.up_proj.weight", (i, h), "linear"),
            (f"{p}.mlp.down_proj.weight", (h, i), "linear"),
        ]
    plan += [
        ("model.norm.weight", (h,), "norm"),
        ("lm_head.weight", (shape.vocab_size, h), "linear"),
    ]
    return plan


def shard_plan(plan, element_bytes: int) -> list[list[tuple[str, tuple[int, ...], str]]]:
    shards: list[list] = [[]]
    size = 0
    for entry in plan:
        nbytes = math.prod(entry[1]) * element_bytes
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    return shards


def random_tensor(shape, kind, generator, device, dtype) -> torch.Tensor:
    if kind == "norm":
        return torch.ones(shape, device=device, dtype=dtype)
    t = torch.randn(shape, generator=generator, device=device, dtype=torch.float32)
    if kind == "linear":
        t *= 1.0 / math.sqrt(shape[1])
    return t.to(dtype)


def write_config(out: Path, shape: LlamaShape, dtype_name: str) -> None:
    # The fixtures' writer: one definition of what an HF Llama directory's config holds.
    write_llama_config(out, shape, SpecialTokenIds(bos=BOS, eos=EOS, pad=EOS), dtype_name)


def write_tokenizer(out: Path, source: Path, vocab_size: int) -> None:
    """Copies the source tokenizer and pads its BPE vocab with `fill<N>` tokens up to vocab_size."""
    tokenizer_json = source / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise MakeModelError(
            f"no tokenizer.json in {source}: run `npm run setup` (it builds the tiny-llama "
            "fixture) or pass --tokenizer-from DIR"
        )
    tokenizer = json.loads(tokenizer_json.read_text())
    if tokenizer["model"]["type"] != "BPE":
        raise MakeModelError(f"{tokenizer_json}: a BPE tokenizer is needed to pad the vocab")
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    taken = set(vocab.values()) | {t["id"] for t in tokenizer.get("added_tokens", [])}
    if max(taken) >= vocab_size:
        raise MakeModelError(f"tokenizer has ids up to {max(taken)}, above vocab {vocab_size}")
    for token_id in range(vocab_size):
        if token_id not in taken:
            name = f"fill{token_id}"
            if name in vocab:
                raise MakeModelError(f"filler token {name} already in the vocab")
            vocab[name] = token_id
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    shutil.copy(source / "tokenizer_config.json", out / "tokenizer_config.json")


def make_model(shape_name: str, out: Path, seed: int, device: str, tokenizer_from: Path) -> dict:
    shape = SHAPES[shape_name]
    dtype = torch.bfloat16
    out.mkdir(parents=True, exist_ok=True)
    # config.json, written last, marks a complete model (bench/src/run-scenario.ts): a
    # run that fails or is killed midway leaves none, and the next run starts over.
    for stale in [*out.glob("model*.safetensors*"), out / "config.json"]:
        stale.unlink(missing_ok=True)
    write_tokenizer(out, tokenizer_from, shape.vocab_size)  # first: fails before the weights
    generator = torch.Generator(device=device).manual_seed(seed)
    shards = shard_plan(tensor_plan(shape), element_bytes=2)
    weight_map: dict[str, str] = {}
    total = 0
    started = time.perf_counter()
    for index, shard in enumerate(shards):
        name = (
            "model.safetensors"
            if len(shards) == 1
            else f"model-{index + 1:05d}-of-{len(shards):05d}.safetensors"
        )
        tensors = {
            key: random_tensor(dims, kind, generator, device, dtype).cpu()
            for key, dims, kind in shard
        }
        save_file(tensors, str(out / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map |= dict.fromkeys(tensors, name)
        print(f"[make_model] {name}: {len(tensors)} tensors", file=sys.stderr, flush=True)
    if len(shards) > 1:
        index_json = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index_json, indent=2))
    write_config(out, shape, "bfloat16")
    return {
        "shape": shape_name,
        "out": str(out),
        "bytes": total,
        "seconds": round(time.perf_counter() - started, 2),
        "device": device,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-2-7b")
    parser.add_argument("--smoke", action="store_true", help="the tiny shape on CPU")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tokenizer-from", type=Path, default=DEFAULT_TOKENIZER)
    args = parser.parse_args(argv)
    shape = "tiny" if args.smoke else args.shape
    device = args.device
    if args.smoke:
        device = "cpu"
    elif device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        summary = make_model(shape, args.out, args.seed, device, args.tokenizer_from)
    except MakeModelError as error:
        print(f"[make_model] error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
