"""A standalone driver: runs generation for a list of requests through Executor.step,
without the TS engine, for tests and benchmarks.

Its scheduling is deliberately simple: every request is admitted at once (up to
max_num_seqs); each step prefills the next chunk of each unfinished prompt within
the token budget and decodes one token for every other sequence.

Example:
    driver = Driver(executor)
    driver.add_adapter(1, "/adapters/tiny-r8")
    out = driver.generate([Request(prompt=[1, 2, 3], adapter_id=1, max_new_tokens=32)])
    out[0].tokens
"""

from dataclasses import dataclass, field

import numpy as np

from lorafleet_executor.protocol.messages import (
    FLAG_NEW,
    FLAG_SAMPLE,
    FLAG_USE_LAST_SAMPLED,
    StepPlan,
    StepResult,
)
from lorafleet_executor.runtime.executor import Executor

from .page_allocator import PageAllocator


@dataclass
class Request:
    prompt: list[int]
    adapter_id: int = -1
    max_new_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int = -1
    logprobs: int = -1
    stop_at_eos: bool = False
    grammar_id: int = -1  # compiled by Executor.compile_grammar; its end (EOS) ends the request


@dataclass
class Generation:
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[dict[int, float]] = field(default_factory=list)  # per token: id -> logprob
    grammar_failed: bool = False  # its grammar failed (the step result said so); it ended


@dataclass
class _Running:
    seq_id: int
    request: Request
    out: Generation
    pages: list[np.ndarray] = field(default_factory=list)
    computed: int = 0  # tokens with KV in the pool
    started: bool = False

    @property
    def done(self) -> bool:
        return len(self.out.tokens) >= self.request.max_new_tokens


class Driver:
    def __init__(
        self,
        executor: Executor,
        chunk_size: int = 64,
        use_last_sampled: bool = True,
        page_seed: int | None = 0,
    ) -> None:
        self.executor = executor
        self.chunk_size = chunk_size
        self.use_last_sampled = use_last_sampled
        self.pages = PageAllocator(executor.pool.num_pages, page_seed)
        self.adapter_pages: dict[int, np.ndarray] = {}
        self.eos = set(executor.cfg.eos_token_ids)
        self._next_seq_id = 0
        self._step_id = 0
        self.results: list[StepResult] = []

    def add_adapter(self, adapter_id: int, path: str) -> None:
        """Stages an adapter and loads it into freshly allocated pool pages."""
        staged = self.executor.stage_adapter(adapter_id, path)
        self.load_adapter(adapter_id, staged.num_pages)

    def load_adapter(self, adapter_id: int, num_pages: int) -> None:
        pages = self.pages.allocate(num_pages)
        self.executor.load_adapter(adapter_id, pages)
        self.adapter_pages[adapter_id] = pages

    def evict_adapter(self, adapter_id: int) -> None:
        self.executor.drop_adapter(adapter_id, "pool")
        self.pages.free(self.adapter_pages.pop(adapter_id))

    def generate(self, requests: list[Request]) -> list[Generation]:
        limit = self.executor.config.max_num_seqs
        started = [self._start(r) for r in requests]
        waiting = list(started)
        running: list[_Running] = []
        finished: list[int] = []
        while waiting or running:
            while waiting and len(running) < limit:
                running.append(waiting.pop(0))
            result = self.executor.step(self._plan(running, finished))
            self.results.append(result)
            finished = self._record(running, result)
            running = [r for r in running if r.seq_id not in finished]
        self.executor.step(self._plan([], finished))  # drops the last finished seqs' state
        return [r.out for r in started]

    def _start(self, request: Request) -> _Running:
        running = _Running(self._next_seq_id, request, Generation())
        self._next_seq_id += 1
        return running

    def _plan(self, running: list[_Running], free_seq_ids: list[int]) -> StepPlan:
        budget = self.executor.config.max_num_batched_tokens
        rows: list[tuple[_Running, list[int], int]] = []  # (seq, tokens, flags)
        for seq in running:
            prompt = seq.request.prompt
            if seq.computed < len(prompt):
                take = min(self.chunk_size, len(prompt) - seq.computed, budget)
                if take <= 0:
                    continue
                tokens = prompt[seq.computed : seq.computed + take]
                flags = FLAG_SAMPLE if seq.computed + take == len(prompt) else 0
            elif budget >= 1:
                take, flags = 1, FLAG_SAMPLE
                tokens = [seq.out.tokens[-1]]
                if self.use_last_sampled:
                    tokens, flags = [-1], flags | FLAG_USE_LAST_SAMPLED
            else:
                continue
            if not seq.started:
                flags |= FLAG_NEW
            budget -= take
            rows.append((seq, tokens, flags))
        return self._step_plan(rows, free_seq_ids)

    def _step_plan(self, rows: list, free_seq_ids: list[int]) -> StepPlan:
        kv_pages = []
        for seq, tokens, _ in rows:
            pages = self.pages.allocate(2 * len(tokens))
            seq.pages.append(pages)
            kv_pages.append(pages)
        reqs = [seq.request for seq, _, _ in rows]

        def per_seq(name: str, dtype: type) -> np.ndarray:
            return np.array([getattr(r, name) for r in reqs], dtype)

        plan = StepPlan(
            step_id=self._step_id,
            free_seq_ids=np.array(free_seq_ids, np.uint32),
            seq_ids=np.array([seq.seq_id for seq, _, _ in rows], np.uint32),
            flags=np.array([f for _, _, f in rows], np.uint8),
            num_new_tokens=np.array([len(t) for _, t, _ in rows], np.int32),
            num_cached=np.array([seq.computed for seq, _, _ in rows], np.int32),
            num_prompt=np.array([len(r.prompt) for r in reqs], np.int32),
            adapter_ids=per_seq("adapter_id", np.int32),
            temperature=per_seq("temperature", np.float32),
            top_p=per_seq("top_p", np.float32),
            top_k=per_seq("top_k", np.int32),
            min_p=per_seq("min_p", np.float32),
            presence_penalty=per_seq("presence_penalty", np.float32),
            frequency_penalty=per_seq("frequency_penalty", np.float32),
            repetition_penalty=per_seq("repetition_penalty", np.float32),
            seed=per_seq("seed", np.int64),
            logprobs=per_seq("logprobs", np.int32),
            token_ids=np.array([t for _, tokens, _ in rows for t in tokens], np.int32),
            kv_pages=np.concatenate(kv_pages) if kv_pages else np.zeros(0, np.int32),
            grammar_ids=per_seq("grammar_id", np.int32),
        )
        for seq, tokens, _ in rows:
            seq.started = True
            seq.computed += len(tokens)
        self._step_id += 1
        return plan

    def _record(self, running: list[_Running], result: StepResult) -> list[int]:
        by_id = {seq.seq_id: seq for seq in running}
        offset = 0
        for i, seq_id in enumerate(result.seq_ids.tolist()):
            seq = by_id[seq_id]
            count = int(result.top_counts[i])
            ids = result.top_ids[offset : offset + count].tolist()
            values = result.top_logprobs[offset : offset + count].tolist()
            offset += count
            seq.out.tokens.append(int(result.tokens[i]))
            seq.out.logprobs.append(float(result.logprobs[i]))
            seq.out.top.append(dict(zip(ids, values, strict=True)))
            seq.out.grammar_failed |= bool(result.grammar_errors[i])
        finished = []
        for seq in running:
            stops = seq.request.stop_at_eos or seq.request.grammar_id >= 0
            hit_eos = stops and seq.out.tokens and seq.out.tokens[-1] in self.eos
            if seq.done or hit_eos or seq.out.grammar_failed:
                for pages in seq.pages:
                    self.pages.free(pages)
                finished.append(seq.seq_id)
        return finished
