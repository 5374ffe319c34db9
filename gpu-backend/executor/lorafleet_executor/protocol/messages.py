"""The records that cross the engine <-> executor boundary (PROTOCOL.md), as dataclasses.

Mirrors gpu-backend/src/executor/messages.ts. `codec.py` turns frames into these and
back; the runtime consumes and produces them. Arrays are numpy (host memory); the
executor moves what it needs to the device.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

FLAG_SAMPLE = 1
FLAG_NEW = 2
FLAG_USE_LAST_SAMPLED = 4


@dataclass
class InitConfig:
    model_path: str
    dtype: str = "auto"  # auto | bfloat16 | float16 | float32
    device: str = "auto"  # auto | cpu | cuda
    num_pages: int = 0  # 0: derive from gpu_memory_utilization
    gpu_memory_utilization: float = 0.9  # share of the GPU's memory in all
    max_lora_rank: int = 128
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192  # per step
    host_cache_bytes: int = 4 << 30
    lora_backend: str = "triton"  # triton | torch
    cuda_graphs: bool = True
    # auto: as the checkpoint is (FP8 checkpoints in FP8, others dense); fp8: a dense
    # checkpoint's projections quantized to FP8 at load
    quantization: str = "auto"


@dataclass
class StagedAdapter:
    adapter_id: int
    rank: int
    scale: float  # alpha / r, or alpha / sqrt(r) with rsLoRA
    targets: list[str]  # canonical order: q k v o gate up down
    num_pages: int
    host_bytes: int


@dataclass
class StepPlan:
    """One iteration: seqs in order, their new tokens contiguous in `token_ids`."""

    step_id: int
    free_seq_ids: np.ndarray  # u32 [any]
    seq_ids: np.ndarray  # u32 [S]
    flags: np.ndarray  # u8 [S], FLAG_* bits
    num_new_tokens: np.ndarray  # i32 [S]
    num_cached: np.ndarray  # i32 [S], tokens already in the KV cache
    num_prompt: np.ndarray  # i32 [S]
    adapter_ids: np.ndarray  # i32 [S], -1 = base model
    temperature: np.ndarray  # f32 [S], 0 = greedy
    top_p: np.ndarray  # f32 [S]
    top_k: np.ndarray  # i32 [S], 0 = off
    min_p: np.ndarray  # f32 [S]
    presence_penalty: np.ndarray  # f32 [S]
    frequency_penalty: np.ndarray  # f32 [S]
    repetition_penalty: np.ndarray  # f32 [S], 1 = off
    seed: np.ndarray  # i64 [S], -1 = none
    logprobs: np.ndarray  # i32 [S], -1 none, 0 sampled only, n top-n
    token_ids: np.ndarray  # i32 [T], -1 where FLAG_USE_LAST_SAMPLED stands in
    kv_pages: np.ndarray  # i32 [2T], K page then V page per new token
    grammar_ids: np.ndarray  # i32 [S], a compiled grammar constraining its samples, -1 = none
    # Prefix caching: for each seq flagged new with num_cached > 0, in step order, its
    # num_cached cached tokens' ids [P] and their K, V pages [2P] (its page table's start).
    prefix_token_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    prefix_kv_pages: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    @property
    def num_seqs(self) -> int:
        return len(self.seq_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class StepResult:
    """One row per seq that sampled, in step order."""

    step_id: int
    seq_ids: np.ndarray  # u32 [N]
    tokens: np.ndarray  # i32 [N]
    logprobs: np.ndarray  # f32 [N], NaN when not asked
    top_counts: np.ndarray  # i32 [N]
    top_ids: np.ndarray  # i32 [sum(top_counts)]
    top_logprobs: np.ndarray  # f32 [sum(top_counts)]
    grammar_errors: np.ndarray  # u8 [N], 1 = the row's grammar failed (its token is an EOS)
    forward_ms: float = 0.0
    sample_ms: float = 0.0


@dataclass
class StageAdapter:
    adapter_id: int
    path: str


@dataclass
class LoadAdapter:
    adapter_id: int
    pages: np.ndarray  # i32


@dataclass
class DropAdapter:
    adapter_id: int
    tier: str  # pool | host


@dataclass
class CompileGrammar:
    grammar_id: int  # chosen by the engine
    kind: str  # json_schema | regex | choice | grammar | lark
    source: str


@dataclass
class GrammarCompiled:
    grammar_id: int
    compile_ms: float  # wall ms of the compile (0 when it was cached)
    cached: bool  # the same grammar was compiled (or compiling) already


@dataclass
class DropGrammar:
    grammar_id: int


@dataclass
class ErrorReply:
    code: str
    message: str
    request_id: int


@dataclass
class Message:
    request_id: int
    name: str
    body: Any
