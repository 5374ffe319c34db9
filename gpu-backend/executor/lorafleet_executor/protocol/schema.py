"""PROTOCOL.md's table of messages: each one's type, meta fields and arrays.

Mirrors gpu-backend/src/executor/schema.ts; codec.py encodes and checks by it.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from .messages import (
    CompileGrammar,
    DropAdapter,
    DropGrammar,
    ErrorReply,
    GrammarCompiled,
    InitConfig,
    LoadAdapter,
    StageAdapter,
    StagedAdapter,
    StepPlan,
    StepResult,
)

DTYPES = {
    "u8": np.dtype("<u1"),
    "i32": np.dtype("<i4"),
    "u32": np.dtype("<u4"),
    "f32": np.dtype("<f4"),
    "i64": np.dtype("<i8"),
}
MODULE_NAMES = ("q", "k", "v", "o", "gate", "up", "down")
ERROR_CODES = (
    "bad_frame",
    "bad_message",
    "unknown_adapter",
    "adapter_invalid",
    "page_out_of_range",
    "capacity",
    "internal",
    "grammar_invalid",
    "grammar_too_complex",
)
GRAMMAR_KINDS = ("json_schema", "regex", "choice", "grammar", "lark")
MAX_COUNT = 2**53 - 1
MAX_U32 = 2**32 - 1


@dataclass(frozen=True)
class Field:
    """A meta field. kind: count | u32 | number | string | bool | modules | u32_list |
    string_list | a tuple of allowed strings. `length_of`: the sender computes it from
    that array's length, the receiver checks it."""

    wire: str
    kind: Any
    length_of: str | None = None


@dataclass(frozen=True)
class Array:
    wire: str
    dtype: str
    length: Any = "any"  # "any" | (meta field, multiplier)


@dataclass(frozen=True)
class Spec:
    type: int
    fields: tuple[Field, ...] = ()
    arrays: tuple[Array, ...] = ()


def _per_seq(wire: str, dtype: str) -> Array:
    return Array(wire, dtype, ("num_seqs", 1))


def _per_row(wire: str, dtype: str) -> Array:
    return Array(wire, dtype, ("num_sampled", 1))


def _counts(*names: str) -> tuple[Field, ...]:
    return tuple(Field(n, "count") for n in names)


MESSAGES: dict[str, Spec] = {
    "init": Spec(
        1,
        (
            Field("model_path", "string"),
            Field("dtype", ("auto", "bfloat16", "float16", "float32")),
            Field("device", ("auto", "cpu", "cuda")),
            Field("num_pages", "count"),
            Field("gpu_memory_utilization", "number"),
            *_counts("max_lora_rank", "max_num_seqs", "max_num_batched_tokens", "host_cache_bytes"),
            Field("lora_backend", ("triton", "torch")),
            Field("cuda_graphs", "bool"),
            Field("quantization", ("auto", "fp8")),
        ),
    ),
    "ready": Spec(
        2,
        (
            *_counts(
                "num_pages",
                "page_width",
                "num_layers",
                "hidden_size",
                "intermediate_size",
                "num_heads",
                "num_kv_heads",
                "head_dim",
                "vocab_size",
                "max_position",
                "host_cache_bytes",
                "max_adapter_host_bytes",
            ),
            Field("dtype", "string"),
            Field("device", "string"),
            Field("modules", "modules"),
            Field("eos_token_ids", "u32_list"),
            Field("quantization", ("none", "fp8")),
        ),
    ),
    "stage_adapter": Spec(3, (Field("adapter_id", "u32"), Field("path", "string"))),
    "adapter_staged": Spec(
        4,
        (
            Field("adapter_id", "u32"),
            Field("rank", "count"),
            Field("scale", "number"),
            Field("targets", "string_list"),
            *_counts("num_pages", "host_bytes"),
        ),
    ),
    "load_adapter": Spec(5, (Field("adapter_id", "u32"),), (Array("pages", "i32"),)),
    "drop_adapter": Spec(6, (Field("adapter_id", "u32"), Field("tier", ("pool", "host")))),
    "step": Spec(
        7,
        (
            Field("step_id", "u32"),
            Field("num_seqs", "count", "seq_ids"),
            Field("num_tokens", "count", "token_ids"),
            Field("num_prefix_tokens", "count", "prefix_token_ids"),
        ),
        (
            Array("free_seq_ids", "u32"),
            _per_seq("seq_ids", "u32"),
            _per_seq("flags", "u8"),
            _per_seq("num_new_tokens", "i32"),
            _per_seq("num_cached", "i32"),
            _per_seq("num_prompt", "i32"),
            _per_seq("adapter_ids", "i32"),
            _per_seq("temperature", "f32"),
            _per_seq("top_p", "f32"),
            _per_seq("top_k", "i32"),
            _per_seq("min_p", "f32"),
            _per_seq("presence_penalty", "f32"),
            _per_seq("frequency_penalty", "f32"),
            _per_seq("repetition_penalty", "f32"),
            _per_seq("seed", "i64"),
            _per_seq("logprobs", "i32"),
            Array("token_ids", "i32", ("num_tokens", 1)),
            Array("kv_pages", "i32", ("num_tokens", 2)),
            Array("prefix_token_ids", "i32", ("num_prefix_tokens", 1)),
            Array("prefix_kv_pages", "i32", ("num_prefix_tokens", 2)),
            _per_seq("grammar_ids", "i32"),
        ),
    ),
    "step_result": Spec(
        8,
        (
            Field("step_id", "u32"),
            Field("num_sampled", "count", "seq_ids"),
            Field("forward_ms", "number"),
            Field("sample_ms", "number"),
        ),
        (
            _per_row("seq_ids", "u32"),
            _per_row("tokens", "i32"),
            _per_row("logprobs", "f32"),
            _per_row("top_counts", "i32"),
            Array("top_ids", "i32"),
            Array("top_logprobs", "f32"),
            _per_row("grammar_errors", "u8"),
        ),
    ),
    "stats": Spec(9),
    "stats_result": Spec(
        10,
        _counts(
            "host_cache_bytes",
            "host_cache_adapters",
            "pool_adapters",
            "live_seqs",
            "steps",
            "device_memory_bytes",
        ),
    ),
    "shutdown": Spec(11),
    "ok": Spec(12),
    "error": Spec(
        13, (Field("code", ERROR_CODES), Field("message", "string"), Field("request_id", "u32"))
    ),
    "compile_grammar": Spec(
        14, (Field("grammar_id", "u32"), Field("kind", GRAMMAR_KINDS), Field("source", "string"))
    ),
    "grammar_compiled": Spec(
        15, (Field("grammar_id", "u32"), Field("compile_ms", "number"), Field("cached", "bool"))
    ),
    "drop_grammar": Spec(16, (Field("grammar_id", "u32"),)),
}
NAME_BY_TYPE = {spec.type: name for name, spec in MESSAGES.items()}


# The body each message carries: a record class, a dict (`ready` and `stats_result`
# meta as the executor reports them) or None (no fields).
BODY_CLASS: dict[str, type | None] = {
    "init": InitConfig,
    "ready": dict,
    "stage_adapter": StageAdapter,
    "adapter_staged": StagedAdapter,
    "load_adapter": LoadAdapter,
    "drop_adapter": DropAdapter,
    "step": StepPlan,
    "step_result": StepResult,
    "stats": None,
    "stats_result": dict,
    "shutdown": None,
    "ok": None,
    "error": ErrorReply,
    "compile_grammar": CompileGrammar,
    "grammar_compiled": GrammarCompiled,
    "drop_grammar": DropGrammar,
}
