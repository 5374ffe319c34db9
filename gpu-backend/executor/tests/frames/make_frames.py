"""Writes the byte fixtures both codecs are checked against (run from anywhere):

    .venv/bin/python gpu-backend/executor/tests/frames/make_frames.py

`good/<name>.bin`: one valid frame each; both sides must decode it and re-encode the
same bytes. `bad/<code>--<what>.bin`: a broken frame; both sides must refuse it with
the error named by <code> (bad_frame or bad_message).
"""

import json
import struct
from pathlib import Path

import numpy as np

from lorafleet_executor.protocol.codec import encode_message
from lorafleet_executor.protocol.frame import HEADER, MAGIC
from lorafleet_executor.protocol.messages import (
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

HERE = Path(__file__).parent


def step_plan(num_seqs: int) -> StepPlan:
    rng = np.random.default_rng(num_seqs)
    new = rng.integers(1, 5, num_seqs).astype(np.int32)
    tokens = int(new.sum())
    return StepPlan(
        step_id=41,
        free_seq_ids=np.array([7, 2**32 - 1][: max(0, 2 - num_seqs)], np.uint32),
        seq_ids=np.arange(100, 100 + num_seqs, dtype=np.uint32),
        flags=np.array([1, 3, 5][:num_seqs], np.uint8),
        num_new_tokens=new,
        num_cached=rng.integers(0, 50, num_seqs).astype(np.int32),
        num_prompt=rng.integers(1, 50, num_seqs).astype(np.int32),
        adapter_ids=np.array([-1, 0, 12][:num_seqs], np.int32),
        temperature=np.array([0.0, 0.7, 1.3][:num_seqs], np.float32),
        top_p=np.array([1.0, 0.9, 0.5][:num_seqs], np.float32),
        top_k=np.array([0, 40, 1][:num_seqs], np.int32),
        min_p=np.array([0.0, 0.05, 0.0][:num_seqs], np.float32),
        presence_penalty=np.array([0.0, 0.5, -1.0][:num_seqs], np.float32),
        frequency_penalty=np.array([0.0, 0.25, 2.0][:num_seqs], np.float32),
        repetition_penalty=np.array([1.0, 1.1, 1.5][:num_seqs], np.float32),
        seed=np.array([-1, 2**62 + 3, 42][:num_seqs], np.int64),
        logprobs=np.array([-1, 0, 20][:num_seqs], np.int32),
        token_ids=rng.integers(-1, 32000, tokens).astype(np.int32),
        kv_pages=rng.integers(0, 1 << 20, 2 * tokens).astype(np.int32),
        prefix_token_ids=rng.integers(0, 32000, 2 * num_seqs).astype(np.int32),
        prefix_kv_pages=rng.integers(0, 1 << 20, 4 * num_seqs).astype(np.int32),
        grammar_ids=np.array([-1, 0, 2**31 - 1][:num_seqs], np.int32),
    )


GOOD = {
    "init": InitConfig(
        model_path="/models/tiny-llama",
        dtype="float32",
        device="cpu",
        num_pages=4096,
        gpu_memory_utilization=0.85,
        max_lora_rank=64,
        max_num_seqs=32,
        max_num_batched_tokens=2048,
        host_cache_bytes=1 << 33,
        lora_backend="torch",
        cuda_graphs=False,
        quantization="fp8",
    ),
    "ready": {
        "num_pages": 4096,
        "page_width": 128,
        "num_layers": 2,
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_heads": 8,
        "num_kv_heads": 2,
        "head_dim": 32,
        "vocab_size": 512,
        "max_position": 2048,
        "host_cache_bytes": 1 << 33,
        "max_adapter_host_bytes": 1 << 24,
        "dtype": "float32",
        "device": "cpu",
        "modules": {
            "q": [256, 256],
            "k": [256, 64],
            "v": [256, 64],
            "o": [256, 256],
            "gate": [256, 688],
            "up": [256, 688],
            "down": [688, 256],
        },
        "eos_token_ids": [2, 4294967295],
        "quantization": "fp8",
    },
    "stage_adapter": StageAdapter(adapter_id=3, path='/cache/adapters/café-"quoted"\n'),
    "adapter_staged": StagedAdapter(
        adapter_id=3,
        rank=16,
        scale=0.0625,
        targets=["q", "v", "down"],
        num_pages=352,
        host_bytes=1_234_567,
    ),
    "load_adapter": LoadAdapter(adapter_id=3, pages=np.array([9, 4, 2**31 - 1, 0, 5], np.int32)),
    "drop_adapter": DropAdapter(adapter_id=3, tier="host"),
    "step": step_plan(3),
    "step_empty": step_plan(0),
    "step_result": StepResult(
        step_id=41,
        seq_ids=np.array([100, 102], np.uint32),
        tokens=np.array([17, 31999], np.int32),
        logprobs=np.array([np.nan, -0.125], np.float32),
        top_counts=np.array([0, 3], np.int32),
        top_ids=np.array([31999, 5, 6], np.int32),
        top_logprobs=np.array([-0.125, -2.5, -1e-7], np.float32),
        grammar_errors=np.array([0, 1], np.uint8),
        forward_ms=12.375,
        sample_ms=1e-7,
    ),
    "stats": None,
    "stats_result": {
        "host_cache_bytes": 2**40,
        "host_cache_adapters": 12,
        "pool_adapters": 3,
        "live_seqs": 64,
        "steps": 123456,
        "device_memory_bytes": 2**53 - 1,
    },
    "shutdown": None,
    "ok": None,
    "error": ErrorReply(
        code="adapter_invalid", message="rank 256 > max_lora_rank 128", request_id=9
    ),
    "compile_grammar": CompileGrammar(
        grammar_id=2**32 - 1,
        kind="json_schema",
        source='{"type":"object","properties":{"ü":{"enum":["a\\"b"]}}}',
    ),
    "grammar_compiled": GrammarCompiled(grammar_id=7, compile_ms=2.375, cached=False),
    "drop_grammar": DropGrammar(grammar_id=7),
    "error_grammar": ErrorReply(
        code="grammar_invalid", message='Unimplemented keys: ["uniqueItems"]', request_id=4
    ),
}


def raw_frame(
    type_: int, meta: dict, arrays: bytes = b"", *, magic: int = MAGIC, patch=(b"", b"")
) -> bytes:
    """A frame built by hand, bypassing the encoder's checks; `patch` edits the meta text."""
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode().replace(*patch)
    head = struct.pack("<I", len(meta_bytes)) + meta_bytes
    payload = head + bytes(-len(head) % 8) + arrays
    return HEADER.pack(magic, 1, type_, 5, len(payload)) + payload


def with_meta(good: bytes, edit, patch=(b"", b"")) -> bytes:
    """`good` with its meta JSON changed by `edit` (arrays kept as they are)."""
    (meta_len,) = struct.unpack_from("<I", good, 16)
    meta = json.loads(good[20 : 20 + meta_len])
    edit(meta)
    arrays = good[16 + ((4 + meta_len + 7) & ~7) :]
    return raw_frame(struct.unpack_from("<H", good, 6)[0], meta, arrays, patch=patch)


def bad_frames(good: dict[str, bytes]) -> dict[str, bytes]:
    ok = good["ok"]
    step = good["step"]
    return {
        "bad_frame--magic": raw_frame(12, {"arrays": []}, magic=0x3250464C),
        "bad_frame--version": ok[:4] + struct.pack("<H", 2) + ok[6:],
        "bad_frame--length_over_limit": ok[:12] + struct.pack("<I", (64 << 20) + 1) + ok[16:],
        "bad_frame--truncated": step[: len(step) - 8],
        "bad_frame--short_header": ok[:10],
        "bad_frame--trailing_bytes": ok + bytes(8),
        "bad_message--unknown_type": raw_frame(99, {"arrays": []}),
        "bad_message--meta_not_json": raw_frame(12, {"arrays": []}, patch=(b'"', b"'")),
        "bad_message--meta_not_object": HEADER.pack(MAGIC, 1, 12, 5, 8)
        + struct.pack("<I", 2)
        + b"[]\0\0",
        "bad_message--meta_len_past_payload": ok[:16] + struct.pack("<I", 999) + ok[20:],
        "bad_message--nan_in_meta": with_meta(
            good["step_result"], lambda m: m.update(forward_ms="NaN"), patch=(b'"NaN"', b"NaN")
        ),
        "bad_message--missing_field": with_meta(good["init"], lambda m: m.pop("max_lora_rank")),
        "bad_message--unknown_field": with_meta(good["stats"], lambda m: m.update(extra=1)),
        "bad_message--wrong_field_type": with_meta(good["init"], lambda m: m.update(num_pages="9")),
        "bad_message--negative_count": with_meta(good["ready"], lambda m: m.update(num_pages=-1)),
        "bad_message--bool_as_count": with_meta(good["ready"], lambda m: m.update(head_dim=True)),
        "bad_message--enum_value": with_meta(good["drop_adapter"], lambda m: m.update(tier="disk")),
        "bad_message--grammar_kind": with_meta(
            good["compile_grammar"], lambda m: m.update(kind="xml_schema")
        ),
        "bad_message--quantization_value": with_meta(
            good["init"], lambda m: m.update(quantization="int4")
        ),
        "bad_message--modules_missing_one": with_meta(
            good["ready"], lambda m: m["modules"].pop("down")
        ),
        "bad_message--array_dtype": with_meta(step, lambda m: m["arrays"][1].__setitem__(1, "i32")),
        "bad_message--array_length": with_meta(step, lambda m: m.update(num_seqs=2)),
        "bad_message--arrays_missing": with_meta(
            good["load_adapter"], lambda m: m.update(arrays=[])
        ),
        "bad_message--array_past_payload": with_meta(
            good["load_adapter"], lambda m: m["arrays"][0].__setitem__(2, 1000)
        ),
        "bad_message--payload_longer_than_arrays": with_meta(
            good["load_adapter"], lambda m: m["arrays"][0].__setitem__(2, 2)
        ),
        "bad_message--token_sum": with_meta(
            step,
            lambda m: (
                m.update(num_tokens=m["num_tokens"] - 1),
                m["arrays"][16].__setitem__(2, m["num_tokens"]),
                m["arrays"][17].__setitem__(2, 2 * m["num_tokens"]),
            ),
        ),
        "bad_message--top_counts_sum": with_meta(
            good["step_result"],
            lambda m: (m["arrays"][4].__setitem__(2, 2), m["arrays"][5].__setitem__(2, 2)),
        ),
    }


def main() -> None:
    good = {}
    for name, body in GOOD.items():
        message = {"step_empty": "step", "error_grammar": "error"}.get(name, name)
        good[name] = encode_message(5, message, body)
    for folder, frames in (("good", good), ("bad", bad_frames(good))):
        (HERE / folder).mkdir(exist_ok=True)
        for old in (HERE / folder).glob("*.bin"):
            old.unlink()
        for name, data in frames.items():
            (HERE / folder / f"{name}.bin").write_bytes(data)
    print(f"wrote {len(good)} good and {len(bad_frames(good))} bad frames under {HERE}")


if __name__ == "__main__":
    main()
