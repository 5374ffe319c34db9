"""Decode steps as the server runs them (issue 21 item 3): the Executor on a model folder,
`batch` sequences prefilled, then decode steps each launched before the one before it is
read (the server's async scheduling), under the torch profiler. Reports the device's
host-to-device copies per step (one: the step's upload, model/upload.py) and the share of
the window the GPU sat idle between them (`runtime/step_profiler.device_busy`). With
`adapters` (folders as make_adapters.py writes them) each sequence runs on one of them.

    python bench/gpu/step_profile.py --model /tmp/llama-2-7b --adapters-dir /tmp/adapters
"""

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from lorafleet_executor.protocol.messages import (
    FLAG_NEW,
    FLAG_SAMPLE,
    FLAG_USE_LAST_SAMPLED,
    InitConfig,
    StepPlan,
)
from lorafleet_executor.runtime.executor import Executor
from lorafleet_executor.runtime.step_profiler import device_busy


def plan(step_id: int, flags: int, tokens: np.ndarray, cached: int, pages: np.ndarray,
         adapter_ids: np.ndarray, prompt: int) -> StepPlan:  # fmt: skip
    """Every sequence alike: `tokens` [B, n] after `cached` ones, greedy."""
    n = len(adapter_ids)
    full = np.full
    return StepPlan(
        step_id=step_id, free_seq_ids=np.zeros(0, np.uint32),
        seq_ids=np.arange(n, dtype=np.uint32), flags=full(n, flags, np.uint8),
        num_new_tokens=full(n, tokens.shape[1], np.int32), num_cached=full(n, cached, np.int32),
        num_prompt=full(n, prompt, np.int32), adapter_ids=adapter_ids.astype(np.int32),
        temperature=np.zeros(n, np.float32), top_p=np.ones(n, np.float32),
        top_k=np.zeros(n, np.int32), min_p=np.zeros(n, np.float32),
        presence_penalty=np.zeros(n, np.float32), frequency_penalty=np.zeros(n, np.float32),
        repetition_penalty=np.ones(n, np.float32), seed=full(n, -1, np.int64),
        logprobs=full(n, -1, np.int32), token_ids=tokens.reshape(-1).astype(np.int32),
        kv_pages=pages.astype(np.int32), grammar_ids=full(n, -1, np.int32),
    )  # fmt: skip


def served_decode(model: Path, adapters: list[Path], batch: int, prompt: int, steps: int,
                  warmup: int, device: str) -> dict:  # fmt: skip
    """Figures of `steps` profiled decode steps after `warmup` unprofiled ones."""
    total = prompt + warmup + steps
    # on the GPU the pool takes what gpu_memory_utilization leaves, as served
    pages = 0 if device == "cuda" else 2 * batch * total + 20_000
    config = InitConfig(model_path=str(model), device=device, num_pages=pages,
                        gpu_memory_utilization=0.8, max_num_seqs=batch,
                        max_num_batched_tokens=batch * prompt, max_lora_rank=64)  # fmt: skip
    executor = Executor(config)
    next_page = 0
    for i, folder in enumerate(adapters):
        staged = executor.stage_adapter(i, str(folder))
        executor.load_adapter(i, np.arange(next_page, next_page + staged.num_pages))
        next_page += staged.num_pages
    # seq s's token t: K page kv[s, t, 0], V page kv[s, t, 1]
    kv = next_page + np.arange(batch * total * 2).reshape(batch, total, 2)
    adapter_ids = np.arange(batch) % len(adapters) if adapters else np.full(batch, -1)
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, executor.cfg.vocab_size, size=(batch, prompt))
    executor.step(plan(0, FLAG_NEW | FLAG_SAMPLE, tokens, 0, kv[:, :prompt].reshape(-1),
                       adapter_ids, prompt))  # fmt: skip
    last = np.full((batch, 1), -1)

    def decode(k: int):
        position = prompt + k - 1
        return executor.launch(plan(k, FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED, last, position,
                                    kv[:, position].reshape(-1), adapter_ids, prompt))  # fmt: skip

    in_flight = decode(1)
    for k in range(2, warmup + 1):
        in_flight, done = decode(k), in_flight
        done.wait()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
        torch.cuda.synchronize()
    copies = executor.upload.copies
    with torch.profiler.profile(activities=activities) as profile:
        for k in range(warmup + 1, warmup + steps + 1):
            in_flight, done = decode(k), in_flight
            done.wait()
        in_flight.wait()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        profile.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    executor.close()
    copied = [e for e in events if e.get("cat") == "gpu_memcpy" and "HtoD" in e.get("name", "")]
    busy = device_busy(events)
    return {
        "batch": batch,
        "adapters": len(adapters),
        "steps": steps,
        "uploads_per_step": (executor.upload.copies - copies) / steps,
        "h2d_copies_per_step": len(copied) / steps,
        "gpu_idle_fraction": 1 - busy.busy_share if busy.span_us else None,
        "longest_gaps_us": busy.gaps_us[:5],
        "mean_step_ms": busy.span_us / steps / 1e3 if busy.span_us else None,
    }
