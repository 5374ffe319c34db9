"""Structured outputs at Llama-2-7B shapes (issue 22): a decode batch where every row has
its own LoRA adapter and its own JSON schema, against the same batch unconstrained.

    python bench/gpu/grammar_bench.py --model /tmp/bench/models/llama-2-7b-llama32k \
        --out $OUT/grammar.json                    # the model's tokenizer: llama32k
    python bench/gpu/grammar_bench.py --smoke --out /tmp/grammar.json   # tiny model, CPU

The real Executor (CUDA graphs, Triton LoRA kernels, bf16) and its grammar path: a
schema is compiled when a row takes it (off the step thread; the row starts once it is
compiled), each row's matcher is fed its tokens, and each step's masks are filled on the
CPU while the GPU runs the step's forward, then applied in one launch.

The constrained run keeps `--batch` slots busy for `--steps` steps: a slot prefills a short
prompt on its adapter with the next schema of the corpus (bench/grammar/gen_schemas.py, 200
random schemas, drawn Zipf-like so some repeat), decodes until its answer ends (the grammar
allows only EOS) or `--max-new-tokens`, and starts over with the next schema. Steps are
launched `--ahead` before the oldest one's samples are read, as the server does. The run's
step plans are recorded; the unconstrained run replays exactly the same plans with no
grammar, so both runs do the same forwards and only the grammar work differs.

Measured: tokens/s of both runs (`structured_vs_free_b64`), the grammar's CPU time per
step (fill + apply launch; p50/p99 in µs, `grammar_mask_us_p99`), the apply kernel's GPU
time on [batch, vocab] logits, compile p50/p99 of the schemas compiled and the cache's
hit rate, and how many answers parse and follow their schema.
"""

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from lorafleet_executor.grammar.limits import GrammarOptions
from lorafleet_executor.grammar.tokenizer import grammar_tokenizer
from lorafleet_executor.kernels.token_bitmask import apply_token_bitmask
from lorafleet_executor.protocol.messages import (
    FLAG_NEW,
    FLAG_SAMPLE,
    FLAG_USE_LAST_SAMPLED,
    InitConfig,
    StepPlan,
)
from lorafleet_executor.runtime.executor import Executor
from lorafleet_reference.page_allocator import PageAllocator
from lorafleet_reference.plans import PlanRow, step_plan
from make_adapters import make_adapters, shape_of_model
from run_info import REPO, device_folder, fixture_model, run_info

sys.path.insert(0, str(REPO / "bench" / "grammar"))
from gen_schemas import random_schemas  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass
class Slot:
    adapter_id: int
    pages: np.ndarray  # KV pages for prompt + max_new_tokens
    seq_id: int = -1
    grammar_id: int = -1
    schema: int = -1  # its index in the corpus
    sent: int = 0  # tokens whose KV is computed (or in flight)
    outputs: list[int] = field(default_factory=list)
    state: str = "idle"  # idle -> compiling -> start -> running -> done -> idle
    prompt: list[int] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


class ConstrainedRun:
    """Drives the slots through the executor and records every step plan it sends."""

    def __init__(self, ex: Executor, slots: list[Slot], args, schemas: list[dict]) -> None:
        self.ex, self.slots, self.args, self.schemas = ex, slots, args, schemas
        self.plans: list[StepPlan] = []
        self.fill_us: list[float] = []
        self.compile_ms: list[float] = []
        self.hits = self.misses = 0
        self.answers: list[tuple[int, list[int]]] = []  # (schema, output tokens) of finished rows
        self.failures = 0
        self._next_seq, self._next_grammar, self._draws = 0, 0, 0
        self._rng = np.random.default_rng(args.seed)
        self._compiled: dict[int, threading.Event] = {}
        self._lock = threading.Lock()
        self.eos = set(ex.cfg.eos_token_ids)

    def _next_schema(self) -> int:
        # Zipf-like draws: a few schemas are popular (cache hits), the tail is cold.
        return int(min(self._rng.zipf(1.3) - 1, len(self.schemas) - 1))

    def _begin(self, slot: Slot) -> None:
        slot.schema = self._next_schema()
        slot.grammar_id, self._next_grammar = self._next_grammar, self._next_grammar + 1
        done = threading.Event()
        self._compiled[slot.grammar_id] = done

        def reply(outcome, hit: bool) -> None:
            with self._lock:
                if hit:
                    self.hits += 1
                else:
                    self.misses += 1
                    if hasattr(outcome, "compile_ms"):
                        self.compile_ms.append(outcome.compile_ms)
            done.set()

        slot.state = "compiling"
        source = json.dumps(self.schemas[slot.schema])
        self.ex.compile_grammar(slot.grammar_id, "json_schema", source, reply)

    def plan(self, step_id: int, free: list[int]) -> StepPlan:
        rows = []
        for slot in self.slots:
            if slot.state == "idle":
                self._begin(slot)
            if slot.state == "compiling" and self._compiled[slot.grammar_id].is_set():
                slot.state, slot.seq_id = "start", self._next_seq
                self._next_seq += 1
                slot.prompt = self._rng.integers(3, 500, self.args.prompt_len).tolist()
                slot.outputs, slot.sent = [], 0
            if slot.state == "start":
                rows.append((slot, FLAG_NEW | FLAG_SAMPLE, slot.prompt))
                slot.state = "running"
            elif (
                slot.state == "running" and slot.sent < len(slot.prompt) + self.args.max_new_tokens
            ):
                rows.append((slot, FLAG_SAMPLE | FLAG_USE_LAST_SAMPLED, [-1]))
        plan = step_plan(step_id, plan_rows(step_id, rows), free, self.args.temperature)
        for slot, _, tokens in rows:
            slot.sent += len(tokens)
        self.plans.append(plan)
        return plan

    def record(self, result) -> list[int]:
        """A step's samples; returns the seq ids of rows that ended (freed next step)."""
        by_seq = {slot.seq_id: slot for slot in self.slots if slot.state == "running"}
        ended = []
        for seq_id, token, failed in zip(
            result.seq_ids.tolist(), result.tokens.tolist(), result.grammar_errors.tolist(),
            strict=True,
        ):  # fmt: skip
            slot = by_seq.get(seq_id)
            if slot is None:
                continue
            slot.outputs.append(token)
            self.failures += failed
            if token in self.eos or failed or len(slot.outputs) >= self.args.max_new_tokens:
                if token in self.eos and not failed:
                    self.answers.append((slot.schema, slot.outputs[:-1]))
                slot.state = "idle"
                self.ex.drop_grammar(slot.grammar_id)
                ended.append(seq_id)
        return ended


def plan_rows(step_id: int, rows: list) -> list[PlanRow]:
    """(slot, flags, new tokens) -> plan rows; each new sequence seeded by its step."""
    return [
        PlanRow(
            slot.seq_id,
            flags,
            tokens,
            slot.sent,
            len(slot.prompt),
            slot.pages[2 * slot.sent : 2 * (slot.sent + len(tokens))],
            adapter_id=slot.adapter_id,
            grammar_id=slot.grammar_id,
            seed=step_id * 1000 + i,
        )
        for i, (slot, flags, tokens) in enumerate(rows)
    ]


def drive_constrained(run: ConstrainedRun, steps: int, ahead: int, device) -> tuple[float, int]:
    """Runs `steps` steps; returns (seconds, sampled tokens) of all but the warm-up."""
    launched, freed, tokens, started = [], [], 0, None
    for step_id in range(steps):
        if step_id == run.args.warmup:
            sync(device)
            started, tokens = time.perf_counter(), 0
        plan = run.plan(step_id, freed)
        freed = []
        launched.append(run.ex.launch(plan))
        if run.ex.grammar_masks is not None and (plan.grammar_ids >= 0).any():
            run.fill_us.append(run.ex.grammar_masks.last_fill_us)
        while len(launched) > ahead:
            result = launched.pop(0).wait()
            tokens += len(result.tokens)
            freed += run.record(result)
    for step in launched:
        tokens += len(step.wait().tokens)
    sync(device)
    seconds = time.perf_counter() - started
    live = [slot.seq_id for slot in run.slots if slot.state == "running"] + freed
    run.ex.step(step_plan(steps, [], live))  # the replay starts from no sequence
    return seconds, tokens


def replay_free(ex: Executor, plans: list[StepPlan], ahead: int, warmup: int, device):
    """The same plans with no grammar: the same forwards, sampling and frees."""
    launched, tokens, started = [], 0, None
    for step_id, plan in enumerate(plans):
        if step_id == warmup:
            sync(device)
            started, tokens = time.perf_counter(), 0
        free_plan = replace(plan, grammar_ids=np.full(plan.num_seqs, -1, np.int32))
        launched.append(ex.launch(free_plan))
        while len(launched) > ahead:
            tokens += len(launched.pop(0).wait().tokens)
    for step in launched:
        tokens += len(step.wait().tokens)
    sync(device)
    return time.perf_counter() - started, tokens


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def apply_kernel_us(batch: int, vocab: int, device: torch.device, repeats: int = 200):
    """The mask kernel alone on [batch, vocab] bf16 logits, every row constrained (GPU)."""
    if device.type != "cuda":
        return None
    logits = torch.randn(batch, vocab, device=device, dtype=torch.bfloat16)
    bitmask = torch.randint(-(2**31), 2**31 - 1, (batch, (vocab + 31) // 32), device=device,
                            dtype=torch.int32)  # fmt: skip
    rows = torch.arange(batch, device=device, dtype=torch.int32)
    apply_token_bitmask(logits, bitmask, rows)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        apply_token_bitmask(logits, bitmask, rows)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / repeats


def validity(model: Path, vocab: int, eos: list[int], answers, schemas) -> dict:
    """How many finished answers parse as JSON and follow their schema (jsonschema if
    installed there, else parsing only)."""
    tokenizer = grammar_tokenizer(str(model), vocab, eos)
    try:
        import jsonschema  # noqa: PLC0415 - optional on the GPU host
    except ImportError:
        jsonschema = None
    parsed = valid = 0
    for schema, tokens in answers:
        try:
            value = json.loads(tokenizer.decode_bytes(tokens).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        parsed += 1
        if jsonschema is not None and jsonschema.Draft202012Validator(schemas[schema]).is_valid(
            value
        ):
            valid += 1
    return {
        "finished": len(answers),
        "parsed_json": parsed,
        "followed_schema": valid if jsonschema is not None else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="HF-format model dir with its tokenizer")
    for flag, kind, default, what in [
        ("--batch", int, 64, "rows (slots) decoding at once, each its own adapter and schema"),
        ("--rank", int, 16, "rank of the q/k/v/o adapters"),
        ("--steps", int, 400, "steps of each run"),
        ("--warmup", int, 40, "first steps not timed"),
        ("--ahead", int, 2, "steps launched before the oldest one's samples are read"),
        ("--prompt-len", int, 32, "prompt tokens of a row"),
        ("--max-new-tokens", int, 256, "a row that has not ended by then starts over"),
        ("--temperature", float, 1.0, "sampling temperature of every row"),
        ("--threads", int, 4, "the executor's --grammar-threads"),
        ("--seed", int, 0, "schema draws and prompts"),
    ]:
        parser.add_argument(flag, type=kind, default=default, help=what)
    parser.add_argument("--out", type=Path, help="result JSON (default bench/results/<device>/)")
    parser.add_argument("--smoke", action="store_true", help="tiny fixture model on CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model = args.model or fixture_model()
        args.batch, args.rank, args.steps, args.warmup = 4, 8, 20, 4
        args.prompt_len, args.max_new_tokens, args.threads = 4, 48, 2
    if args.model is None:
        parser.error("--model is required (or --smoke)")
    on_gpu = torch.cuda.is_available() and not args.smoke
    device = torch.device("cuda" if on_gpu else "cpu")
    schemas = random_schemas(200)

    with tempfile.TemporaryDirectory(prefix="grammar-bench-") as tmp:
        shape = shape_of_model(args.model)
        names = [(f"a{i}", args.rank) for i in range(args.batch)]
        make_adapters(shape, names, Path(tmp), TARGETS, 4, 0, "cuda" if on_gpu else "cpu", "b")
        ex = Executor(
            InitConfig(
                model_path=str(args.model),
                dtype="bfloat16" if on_gpu else "float32",
                device=device.type,
                num_pages=0 if on_gpu else 20_000,
                gpu_memory_utilization=0.85,
                max_lora_rank=args.rank,
                max_num_seqs=args.batch,
                max_num_batched_tokens=max(2048, args.batch * args.prompt_len),
                lora_backend="triton" if on_gpu else "torch",
                cuda_graphs=on_gpu,
                host_cache_bytes=64 << 30,
            ),
            grammar=GrammarOptions(mask_threads=args.threads),
        )
        pages = PageAllocator(ex.pool.num_pages, seed=0)
        for i, (name, _) in enumerate(names):
            staged = ex.stage_adapter(i, str(Path(tmp) / name))
            ex.load_adapter(i, pages.allocate(staged.num_pages))
        per_seq = 2 * (args.prompt_len + args.max_new_tokens + 1)
        slots = [Slot(adapter_id=i, pages=pages.allocate(per_seq)) for i in range(args.batch)]
        run = ConstrainedRun(ex, slots, args, schemas)
        constrained_s, constrained_tokens = drive_constrained(run, args.steps, args.ahead, device)
        free_s, free_tokens = replay_free(ex, run.plans, args.ahead, args.warmup, device)
        vocab = ex.cfg.vocab_size
        answers = validity(args.model, vocab, list(ex.cfg.eos_token_ids), run.answers, schemas)
        ex.close()

    constrained_tps, free_tps = constrained_tokens / constrained_s, free_tokens / free_s
    lookups = run.hits + run.misses
    report = {
        **run_info(device),
        "model": str(args.model),
        "vocab_size": vocab,
        "batch": args.batch,
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "ahead": args.ahead,
        "grammar_threads": args.threads,
        "structured_tokens_per_s": round(constrained_tps, 1),
        "free_tokens_per_s": round(free_tps, 1),
        "structured_vs_free_b64": round(constrained_tps / free_tps, 4),
        "grammar_mask_us_p50": round(percentile(run.fill_us, 50), 1),
        "grammar_mask_us_p99": round(percentile(run.fill_us, 99), 1),
        "grammar_apply_kernel_us": apply_kernel_us(args.batch, vocab, device),
        "grammar_compile_ms_p50": round(percentile(run.compile_ms, 50), 3),
        "grammar_compile_ms_p99": round(percentile(run.compile_ms, 99), 3),
        "grammar_cache_hit_rate": round(run.hits / lookups, 4) if lookups else None,
        "grammar_compiles": run.misses,
        "grammar_failures": run.failures,
        "answers": answers,
    }
    out = args.out or REPO / "bench" / "results" / device_folder(device) / "grammar.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
