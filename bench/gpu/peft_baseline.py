"""The S-LoRA paper's "PEFT" baseline: HF transformers + PEFT serving a mixed-adapter batch.

    python bench/gpu/peft_baseline.py --model /tmp/llama-2-7b --adapters /tmp/adapters \
        --trace trace.jsonl --batch 32
    python bench/gpu/peft_baseline.py --smoke --model M --adapters A --trace T   # CPU

Takes the first `--batch` requests of the trace, loads each adapter they name into one
PeftModel, and generates for all of them in one batch with PEFT's mixed-batch inference
(`generate(..., adapter_names=[...])`; "__base__" rows use the base model), greedy,
prompts left-padded. Every row runs max(output lengths) steps, as HF generate does; only
the tokens each request asked for are counted. One warm-up generation (2 tokens) runs
first, so CUDA start-up and kernel selection are not timed. Prints one JSON object.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import peft
import torch
import transformers
from peft import PeftModel
from trace_file import read_trace
from transformers import AutoModelForCausalLM

BASE_ROW = "__base__"


class PeftBaselineError(Exception):
    pass


def left_padded(prompts: list[list[int]], pad_id: int, device: str):
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def load_model(model_dir: Path, adapters_dir: Path, names: list[str], device: str, dtype):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    model.eval()
    if not names:
        return model
    missing = [n for n in names if not (adapters_dir / n / "adapter_config.json").is_file()]
    if missing:
        raise PeftBaselineError(f"adapters not found in {adapters_dir}: {missing[:5]}")
    model = PeftModel.from_pretrained(model, adapters_dir / names[0], adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(adapters_dir / name, adapter_name=name)
    return model.to(device)


def generate(model, ids, mask, adapter_names, new_tokens: int, pad_id: int):
    kwargs = {"adapter_names": adapter_names} if isinstance(model, PeftModel) else {}
    return model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        pad_token_id=pad_id,
        **kwargs,
    )


def run(args) -> dict:
    trace = read_trace(args.trace)
    requests = trace.requests[: args.batch]
    if not requests:
        raise PeftBaselineError(f"{args.trace} has no requests")
    if args.max_new_tokens is not None:
        lengths = [min(r.output_len, args.max_new_tokens) for r in requests]
    else:
        lengths = [r.output_len for r in requests]
    names = sorted({r.adapter for r in requests if r.adapter is not None})
    cuda = args.device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    model = load_model(args.model, args.adapters, names, args.device, dtype)
    pad_id = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    ids, mask = left_padded([r.prompt for r in requests], pad_id, args.device)
    rows = [r.adapter or BASE_ROW for r in requests]
    steps = max(lengths)
    with torch.inference_mode():
        generate(model, ids, mask, rows, 2, pad_id)
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        out = generate(model, ids, mask, rows, steps, pad_id)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    if out.shape[1] - ids.shape[1] != steps:
        raise PeftBaselineError(f"generate made {out.shape[1] - ids.shape[1]} tokens, not {steps}")
    tokens = sum(lengths)
    return {
        "baseline": "peft",
        "requests": len(requests),
        "adapters": len(names),
        "input_tokens": sum(r.input_len for r in requests),
        "output_tokens": tokens,
        "steps": steps,
        "seconds": seconds,
        "output_tokens_per_s": tokens / seconds,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--adapters", type=Path, required=True)
    parser.add_argument("--trace", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, help="cap each request's output length")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--smoke", action="store_true", help="CPU, 4 requests, 8 tokens")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.device, args.batch = "cpu", min(args.batch, 4)
        args.max_new_tokens = min(args.max_new_tokens or 8, 8)
    elif args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        result = run(args)
    except PeftBaselineError as error:
        print(f"[peft_baseline] error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(result)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
