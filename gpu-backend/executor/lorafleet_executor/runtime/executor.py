"""The executor: owns the model, the unified pool, the host tier and per-sequence state,
and carries out the engine's messages (PROTOCOL.md). `server.py` calls it.

Example:
    ex = Executor(InitConfig(model_path="/models/tiny-llama", num_pages=4096))
    staged = ex.stage_adapter(1, "/adapters/tiny-r8")
    ex.load_adapter(1, np.arange(staged.num_pages, dtype=np.int32))
    result = ex.step(plan)

With a tensor-parallel group every rank runs an Executor on its share and carries out
the same messages in the same order (parallel/README.md); only rank 0 samples, and its
tokens are broadcast so every rank's sequences continue alike.
"""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from ..errors import BadMessage, CapacityExceeded, UnknownAdapter
from ..grammar.cache import GrammarCache
from ..grammar.limits import GrammarOptions
from ..grammar.masks import GrammarMasks
from ..grammar.registry import GrammarRegistry, Reply
from ..grammar.sequence import SequenceGrammar, feed_all
from ..grammar.tokenizer import grammar_tokenizer
from ..graphs.decode import DecodeGraphs
from ..graphs.mixed import MixedGraphs
from ..model.adapter_layout import max_adapter_pages
from ..model.adapters import ParsedAdapter, packed_bytes, parse_adapter, read_adapter_config
from ..model.config import ModelConfig
from ..model.llama import LlamaModel
from ..model.lora_batch import PlacedAdapter
from ..model.pool import UnifiedPool
from ..model.sampling import SamplingParams, TokenHistory, any_penalty, sample
from ..model.upload import Packing, StepUpload, Uploaded
from ..model.weights import ModelWeights
from ..parallel.sharded_adapter import parse_adapter_shard
from ..parallel.sharded_weights import load_weight_shard
from ..protocol.messages import (
    FLAG_NEW,
    FLAG_USE_LAST_SAMPLED,
    InitConfig,
    StagedAdapter,
    StepPlan,
    StepResult,
)
from ..step.inputs import StepInputs, pack_forward_batch, step_inputs
from ..step.launched import LaunchedStep
from ..step.plan_checks import StepLimits, check_plan
from ..step.sequences import SequenceState, SequenceTable
from .host_buffers import HostBuffers
from .host_cache import HostCache
from .init_config import check_init_config, resolve_device, resolve_dtype, resolve_fp8
from .memory_budget import pages_from_memory
from .stage_processes import StageProcesses
from .warm_up import warm_up_eager

if TYPE_CHECKING:
    from ..parallel.group import TensorGroup

T = TypeVar("T")


class Executor:
    def __init__(
        self,
        config: InitConfig,
        tp: "TensorGroup | None" = None,
        stagers: StageProcesses | None = None,
        grammar: GrammarOptions | None = None,
    ) -> None:
        """`stagers`: worker processes that parse adapters (stage_processes.py); without
        them `stage_adapter` parses on the calling thread. `grammar`: the grammar flags."""
        check_init_config(config)
        self.config = config
        self.tp = tp
        self.stagers = stagers
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.cfg = ModelConfig.from_dir(config.model_path)
        # The model this process computes: the whole one, or one rank's narrower share.
        self.local_cfg = self.cfg if tp is None else tp.shard.local_config(self.cfg)
        self.fp8 = resolve_fp8(config, self.cfg, self.device, self.dtype)
        if tp is None:
            weights = ModelWeights.load(
                self.cfg, config.model_path, self.dtype, self.device, fp8=self.fp8
            )
        else:
            tp.bind(self.device)
            weights = load_weight_shard(
                self.cfg, tp.shard, config.model_path, self.dtype, self.device, self.fp8
            )
        on_cuda = self.device.type == "cuda"
        self.model = LlamaModel(
            self.local_cfg,
            weights,
            lora_backend=config.lora_backend if on_cuda else "torch",
            kernel_backend="triton" if on_cuda else "torch",
            tp=tp,
            full_vocab_size=self.cfg.vocab_size,
        )
        # Collectives inside captured graphs are not tried yet: TP runs eagerly.
        graphs = on_cuda and config.cuda_graphs and tp is None
        num_pages = config.num_pages or pages_from_memory(
            self.model,
            self.local_cfg,
            config.gpu_memory_utilization,
            config.max_num_batched_tokens,
            config.max_num_seqs,
            config.max_lora_rank,
            self.dtype,
            self.device,
            graphs,
        )
        if tp is not None:
            # Page ids name the same slot on every rank: the smallest pool bounds them all.
            num_pages = tp.min_count(num_pages, self.device)
        self.pool = UnifiedPool(
            self.cfg.num_layers, num_pages, self.local_cfg.page_width, self.dtype, self.device
        )
        # Each token takes two pages, so no sequence outgrows half the pool.
        max_context = max(1, min(self.cfg.max_position, num_pages // 2))
        self.seqs = SequenceTable(config.max_num_seqs, max_context, self.device)
        self.limits = StepLimits(
            config.max_num_seqs,
            config.max_num_batched_tokens,
            max_context,
            self.cfg.vocab_size,
            num_pages,
        )
        # Workers write the buffers on a GPU (shared memory), and loads copy from them
        # asynchronously (pinned); the host tier keeps each adapter in the buffer it was
        # packed into.
        self.buffers = HostBuffers(config.host_cache_bytes, shared=stagers is not None, pin=on_cuda)
        self.host = HostCache(config.host_cache_bytes, lambda a: self.buffers.give_back(a.rows))
        self.placed: dict[int, PlacedAdapter] = {}
        self.load_stream = torch.cuda.Stream(self.device) if on_cuda else None
        if on_cuda:
            warm_up_eager(self.model, self.pool, config.max_lora_rank)
        self.decode_graphs: DecodeGraphs | None = None
        self.mixed_graphs: MixedGraphs | None = None
        if graphs:
            shared = torch.cuda.graph_pool_handle()  # one graph replays at a time
            self.decode_graphs = DecodeGraphs(
                self.model, self.pool, self.seqs, config.max_num_seqs, config.max_lora_rank, shared
            )
            # The bmm baseline gathers every row's adapter: captured, a mixed step would
            # gather for the bucket's bounds (every piece, every decode row) each replay.
            if config.lora_backend == "triton":
                self.mixed_graphs = MixedGraphs(
                    self.model,
                    self.pool,
                    self.seqs,
                    config.max_num_seqs,
                    config.max_num_batched_tokens,
                    config.max_lora_rank,
                    shared,
                )
        # One copy takes a step's inputs up (model/upload.py); the device buffer it fills
        # is read only by that step's work on this stream.
        self.upload = StepUpload(self.device)
        self.steps = 0
        self._unwaited: list[LaunchedStep] = []  # launched, maybe not waited for yet
        self.grammar_options = grammar or GrammarOptions()
        eos_ids = list(self.cfg.eos_token_ids)
        self.grammars = GrammarRegistry(
            GrammarCache(
                lambda: grammar_tokenizer(config.model_path, self.cfg.vocab_size, eos_ids)
            ),
            self.grammar_options.compile_timeout_s,
        )
        self.grammar_masks: GrammarMasks | None = None  # made at the first constrained step

    def ready_info(self) -> dict:
        cfg = self.cfg
        return {
            "num_pages": self.pool.num_pages,
            "page_width": self.local_cfg.page_width,
            "num_layers": cfg.num_layers,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_heads": cfg.num_heads,
            "num_kv_heads": cfg.num_kv_heads,
            "head_dim": cfg.head_dim,
            "vocab_size": cfg.vocab_size,
            "max_position": self.limits.max_context,
            "host_cache_bytes": self.host.capacity_bytes,
            "max_adapter_host_bytes": self._max_adapter_host_bytes(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": self.device.type,
            "modules": {m: list(shape) for m, shape in cfg.module_shapes().items()},
            "eos_token_ids": list(cfg.eos_token_ids),
            "quantization": "none" if self.fp8 is None else "fp8",
        }

    def _max_adapter_host_bytes(self) -> int:
        """Host bytes of the largest adapter this executor takes, in its (rank's) layout:
        ParsedAdapter.host_bytes of rank max_lora_rank on all seven modules."""
        local = self.local_cfg
        pages = max_adapter_pages(
            self.config.max_lora_rank, local.module_shapes(), local.page_width
        )
        element_size = torch.empty(0, dtype=self.dtype).element_size()
        return local.num_layers * pages * local.page_width * element_size

    def stage_adapter(self, adapter_id: int, path: str) -> StagedAdapter:
        return self._agreed(lambda: self._stage_adapter(adapter_id, path))

    def _stage_adapter(self, adapter_id: int, path: str) -> StagedAdapter:
        if self.tp is not None:
            adapter = parse_adapter_shard(
                adapter_id,
                path,
                self.cfg,
                self.tp.shard,
                self.config.max_lora_rank,
                self.dtype,
                self.device.type == "cuda",
            )
        else:
            adapter = self._parse_into_host_buffer(adapter_id, path)
        try:
            self.host.put(adapter)
        except CapacityExceeded:
            self.buffers.give_back(adapter.rows)
            raise
        return StagedAdapter(
            adapter_id,
            adapter.rank,
            adapter.scale,
            adapter.targets,
            adapter.num_pages,
            adapter.host_bytes,
        )

    def _parse_into_host_buffer(self, adapter_id: int, path: str) -> ParsedAdapter:
        """Parsed and packed straight into a buffer of exactly its size (host_buffers.py),
        by a staging worker when there are some."""
        max_rank = self.config.max_lora_rank
        config = read_adapter_config(path, self.cfg, max_rank)  # read once: it says the size
        buffer = self.buffers.take(packed_bytes(config, self.cfg, self.dtype))
        try:
            if self.stagers is not None:
                live = self.buffers.live_ids()
                return self.stagers.parse(
                    adapter_id, path, self.cfg, max_rank, self.dtype, config, buffer, live
                )
            return parse_adapter(
                adapter_id, path, self.cfg, max_rank, self.dtype, out=buffer.data, config=config
            )
        except BaseException:
            self.buffers.give_back(buffer.data)
            raise

    def load_adapter(self, adapter_id: int, pages: np.ndarray) -> None:
        """Host tier -> pool pages; returns once the copy is complete (on every rank)."""
        self._agreed(lambda: self._load_adapter(adapter_id, pages))

    def _load_adapter(self, adapter_id: int, pages: np.ndarray) -> None:
        adapter = self.host.get(adapter_id)
        pages = np.asarray(pages, np.int32)
        if len(pages) != adapter.num_pages:
            raise BadMessage(
                f"adapter {adapter_id} needs {adapter.num_pages} pages, got {len(pages)}"
            )
        self.pool.check_pages(pages, f"adapter {adapter_id}")
        index = torch.from_numpy(pages.astype(np.int64))
        if self.load_stream is None:
            self.pool.write_pages(index, adapter.rows)
        else:
            # A side stream, so the copy overlaps with steps on the main stream; the
            # engine never hands out pages that a running step reads.
            with torch.cuda.stream(self.load_stream):
                self.pool.write_pages(index.to(self.device, non_blocking=True), adapter.rows)
            self.load_stream.synchronize()
        self.placed[adapter_id] = PlacedAdapter(adapter_id, adapter.rank, adapter.spans, pages)

    def drop_adapter(self, adapter_id: int, tier: str) -> None:
        self._agreed(lambda: self._drop_adapter(adapter_id, tier))

    def _drop_adapter(self, adapter_id: int, tier: str) -> None:
        if tier not in ("pool", "host"):
            raise BadMessage(f"tier must be 'pool' or 'host', got {tier!r}")
        if adapter_id not in self.placed and adapter_id not in self.host:
            raise UnknownAdapter(f"adapter {adapter_id} is neither in the pool nor staged")
        self.placed.pop(adapter_id, None)
        if tier == "host":
            self.host.drop(adapter_id)

    def compile_grammar(self, grammar_id: int, kind: str, source: str, reply: Reply) -> None:
        """Binds `grammar_id` at once and compiles off this thread; `reply` gets the outcome
        (grammar/registry.py)."""
        self.grammars.compile(grammar_id, kind, source, reply)

    def drop_grammar(self, grammar_id: int) -> None:
        self.grammars.drop(grammar_id)

    def step(self, plan: StepPlan) -> StepResult:
        return self.launch(plan).wait()

    def launch(self, plan: StepPlan) -> LaunchedStep:
        """Queues the step's GPU work; its samples are read by `wait` on the result.

        A step may be launched before the one before it is waited for: its
        use_last_sampled tokens then come from the device. Older steps are waited for
        here, and all of them when the step's sampling needs full token histories."""
        started = time.perf_counter()
        for seq_id in plan.free_seq_ids:
            self.seqs.free(int(seq_id))
        check_plan(plan, self.limits, set(self.placed))
        if plan.num_seqs == 0:
            self.steps += 1
            return LaunchedStep.done(_empty_result(plan.step_id))
        penalized = any_penalty(
            plan.presence_penalty, plan.frequency_penalty, plan.repetition_penalty
        )
        self._wait_for_older(keep_last=not penalized)
        created: list[int] = []
        try:
            seqs = self._seq_states(plan, created)
            inputs = step_inputs(plan, seqs, self.placed)
            packing = Packing()
            write_pages = self.seqs.pack_writes(inputs.page_writes, packing)
            forward = self._pack_forward(inputs, packing)
            sampling = self._pack_sampling(plan, seqs, inputs, packing)
            sent = self.upload.send(packing)
            write_pages(sent)
            logits = forward(sent)
            forward_ms = (time.perf_counter() - started) * 1e3
            params = None if sampling is None else sampling(sent)
            launched = self._sample_on_rank0(plan, seqs, inputs, logits, params, forward_ms)
        except BaseException:
            for seq_id in created:
                self.seqs.free(seq_id)
            raise
        self._commit(seqs, inputs)
        self.steps += 1
        self._unwaited.append(launched)
        return launched

    def close(self) -> None:
        """Stops the staging workers (stages still queued fail) and the grammar compiles."""
        if self.stagers is not None:
            self.stagers.shutdown()
        self.grammars.cache.close()

    def stats(self) -> dict:
        if self.device.type == "cuda":
            device_bytes = torch.cuda.memory_allocated(self.device)
        else:
            device_bytes = self.pool.nbytes + self.model.weights.nbytes()
        return {
            "host_cache_bytes": self.host.used_bytes,
            "host_cache_adapters": len(self.host),
            "pool_adapters": len(self.placed),
            "live_seqs": len(self.seqs),
            "steps": self.steps,
            "device_memory_bytes": device_bytes,
        }

    def _seq_states(self, plan: StepPlan, created: list[int]) -> list[SequenceState]:
        """The step's sequences; new ones start with their cached prefix (PROTOCOL.md
        "Shared pages"): its tokens as their history, its pages as their page table's start."""
        seqs = []
        prefix_at = 0
        for i, seq_id in enumerate(plan.seq_ids.tolist()):
            if plan.flags[i] & FLAG_NEW:
                seq = self.seqs.create(seq_id, self._generator(int(plan.seed[i])))
                created.append(seq_id)
                cached = int(plan.num_cached[i])
                seq.append(plan.prefix_token_ids[prefix_at : prefix_at + cached])
                prefix_at += cached
                grammar_id = int(plan.grammar_ids[i])
                if grammar_id >= 0:
                    seq.grammar = SequenceGrammar.start(grammar_id, self.grammars)
            else:
                seq = self.seqs.get(seq_id)
                if seq.num_tokens != plan.num_cached[i]:
                    raise BadMessage(
                        f"sequence {seq_id} holds {seq.num_tokens} tokens, "
                        f"the plan says num_cached {plan.num_cached[i]}"
                    )
                bound = -1 if seq.grammar is None else seq.grammar.grammar_id
                if plan.grammar_ids[i] != bound:
                    raise BadMessage(
                        f"sequence {seq_id} started with grammar {bound}, "
                        f"the plan says {plan.grammar_ids[i]}"
                    )
            if (
                plan.flags[i] & FLAG_USE_LAST_SAMPLED
                and seq.last_sampled is None
                and seq.late is None
            ):
                raise BadMessage(f"sequence {seq_id} has no sampled token to use")
            seqs.append(seq)
        return seqs

    def _generator(self, seed: int) -> torch.Generator | None:
        if seed < 0:
            return None
        generator = torch.Generator(self.device)
        generator.manual_seed(seed)
        return generator

    def _wait_for_older(self, keep_last: bool) -> None:
        """Waits for launched steps, all but the last one when `keep_last`: a step reads
        late tokens of one step only, and penalties read whole histories."""
        keep = self._unwaited[-1:] if keep_last else []
        for launched in self._unwaited[: len(self._unwaited) - len(keep)]:
            launched.wait()
        self._unwaited = [s for s in keep if not s.waited]

    def _pack_forward(
        self, inputs: StepInputs, packing: Packing
    ) -> Callable[[Uploaded], torch.Tensor]:
        """The forward's inputs into `packing`; the result runs it (a graph or eagerly)
        from the upload, after the step's page writes, and gives the sampling rows' logits."""
        for graphs in (self.decode_graphs, self.mixed_graphs):
            if graphs is not None and graphs.can_run(inputs):
                return graphs.pack(inputs, packing)
        local = self.local_cfg
        batch = pack_forward_batch(
            inputs,
            self.seqs,
            local.module_shapes(),
            local.page_width,
            packing,
            self.config.max_lora_rank,
        )
        return lambda sent: self.model.forward(self.pool, batch(sent))

    def _pack_sampling(
        self, plan: StepPlan, seqs: list[SequenceState], inputs: StepInputs, packing: Packing
    ) -> Callable[[Uploaded], SamplingParams] | None:
        """The sampling rows' parameters into `packing` (None: this rank samples nothing);
        a penalized step's histories with them (its older steps were waited for)."""
        rows = inputs.sample_seqs
        if len(rows) == 0 or (self.tp is not None and self.tp.rank != 0):
            return None
        arrays = {
            name: getattr(plan, name)[rows]
            for name in ("temperature", "top_p", "top_k", "min_p", "presence_penalty",
                         "frequency_penalty", "repetition_penalty", "logprobs")
        }  # fmt: skip
        histories = []
        if any_penalty(
            arrays["presence_penalty"], arrays["frequency_penalty"], arrays["repetition_penalty"]
        ):
            cu_q = inputs.cu_q
            histories = [
                TokenHistory(
                    np.concatenate([seqs[i].tokens, inputs.token_ids[cu_q[i] : cu_q[i + 1]]]),
                    int(plan.num_prompt[i]),
                )
                for i in rows
            ]
        generators = [seqs[i].generator for i in rows]
        return SamplingParams.pack(packing, generators, histories, **arrays)

    def _agreed(self, work: Callable[[], T]) -> T:
        """Runs one adapter request; under TP it fails when any rank's share failed."""
        if self.tp is None:
            return work()
        error = None
        try:
            result = work()
        except Exception as e:
            error = e
        self.tp.agree(error)
        return result

    def _sample_on_rank0(
        self,
        plan: StepPlan,
        seqs: list[SequenceState],
        inputs: StepInputs,
        logits: torch.Tensor,
        params: SamplingParams | None,
        forward_ms: float,
    ) -> LaunchedStep:
        """`params`: None where this rank samples nothing (no sampling row, or not rank 0)."""
        if self.tp is None:
            return self._sample(plan, seqs, inputs, logits, params, forward_ms)
        rows = inputs.sample_seqs
        if len(rows) == 0:  # the same on every rank: the plan is the same
            return LaunchedStep.done(_empty_result(plan.step_id))
        # Every rank needs the tokens to go on: under TP a step is read back at once.
        if self.tp.rank == 0:
            result = self._sample(plan, seqs, inputs, logits, params, forward_ms).wait()
            tokens = torch.from_numpy(result.tokens.astype(np.int64)).to(self.device)
        else:
            # The tokens alone: a worker rank's result only continues its sequences.
            result = _empty_result(plan.step_id)
            result.seq_ids = plan.seq_ids[rows].astype(np.uint32)
            result.logprobs = np.full(len(rows), np.nan, np.float32)
            result.top_counts = np.zeros(len(rows), np.int32)
            result.grammar_errors = np.zeros(len(rows), np.uint8)
            tokens = torch.zeros(len(rows), dtype=torch.int64, device=self.device)
        result.tokens = self.tp.broadcast_tokens(tokens).cpu().numpy().astype(np.int32)
        for i, token in zip(rows, result.tokens.tolist(), strict=True):
            seqs[i].last_sampled, seqs[i].late = token, None
        return LaunchedStep.done(result)

    def _sample(
        self,
        plan: StepPlan,
        seqs: list[SequenceState],
        inputs: StepInputs,
        logits: torch.Tensor,
        params: SamplingParams | None,
        forward_ms: float,
    ) -> LaunchedStep:
        rows = inputs.sample_seqs
        if params is None:
            return LaunchedStep.done(_empty_result(plan.step_id))
        grammar_errors = self._apply_grammars(plan, seqs, inputs, logits)
        out = sample(logits, params)
        return LaunchedStep(
            plan.step_id,
            plan.seq_ids[rows],
            [seqs[i] for i in rows],
            out,
            np.maximum(params.num_logprobs, 0).astype(np.int32),
            grammar_errors,
            forward_ms,
        )

    def _apply_grammars(
        self, plan: StepPlan, seqs: list[SequenceState], inputs: StepInputs, logits: torch.Tensor
    ) -> np.ndarray:
        """Masks the constrained rows of `logits` (the sampling rows'), in place, before
        sampling; u8 per sampling row, 1 = its grammar failed. Rows without a grammar cost
        nothing, and a step without one launches nothing."""
        rows = inputs.sample_seqs
        errors = np.zeros(len(rows), np.uint8)
        constrained = [k for k, i in enumerate(rows) if seqs[i].grammar is not None]
        if not constrained:
            return errors
        # A mask needs every output token before it, also the samples of steps still in
        # flight; this step's forward is queued already, so the wait overlaps it.
        self._wait_for_older(keep_last=False)
        grammars, news = [], []
        for k in constrained:
            i = int(rows[k])
            seq, grammar = seqs[i], seqs[i].grammar
            new = inputs.token_ids[inputs.cu_q[i] : inputs.cu_q[i + 1]].astype(np.int32)
            if plan.flags[i] & FLAG_USE_LAST_SAMPLED:
                new[0] = seq.last_sampled  # known now: its step was waited for
            first = int(plan.num_prompt[i]) + grammar.consumed  # first output not seen yet
            grammars.append(grammar)
            news.append(np.concatenate([seq.tokens[first:], new[max(0, first - seq.num_tokens) :]]))
        if self.grammar_masks is None:
            self.grammar_masks = GrammarMasks(
                self.config.max_num_seqs,
                self.cfg.vocab_size,
                list(self.cfg.eos_token_ids),
                self.device,
                self.grammar_options.mask_threads,
            )
        feed_all(grammars, news, self.grammar_masks.threads)
        errors[constrained] = self.grammar_masks.apply(logits, constrained, grammars)
        return errors

    def _commit(self, seqs: list[SequenceState], inputs: StepInputs) -> None:
        late = inputs.late
        late_rows = (
            {} if late is None else dict(zip(late.at.tolist(), late.rows.tolist(), strict=True))
        )
        for i, seq in enumerate(seqs):
            start, position = int(inputs.cu_q[i]), seq.num_tokens
            seq.append(inputs.token_ids[start : inputs.cu_q[i + 1]])
            if start in late_rows:  # its first token is still on the device
                late.step.fill_in(seq, position, late_rows[start])


def _empty_result(step_id: int) -> StepResult:
    none = np.zeros(0, np.int32)
    return StepResult(
        step_id,
        none.astype(np.uint32),
        none,
        none.astype(np.float32),
        none,
        none,
        none.astype(np.float32),
        none.astype(np.uint8),
    )
