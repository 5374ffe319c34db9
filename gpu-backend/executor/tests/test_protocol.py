"""The Python codec against the shared byte fixtures (tests/frames) and PROTOCOL.md's rules."""

import io
import struct
from pathlib import Path

import numpy as np
import pytest

from lorafleet_executor.errors import BadFrame, BadMessage
from lorafleet_executor.protocol.codec import decode_message, encode_message
from lorafleet_executor.protocol.frame import MAX_PAYLOAD_BYTES, read_frame, read_header
from lorafleet_executor.protocol.messages import LoadAdapter, StepPlan, StepResult

FRAMES = Path(__file__).parent / "frames"
GOOD = sorted((FRAMES / "good").glob("*.bin"))
BAD = sorted((FRAMES / "bad").glob("*.bin"))
ERRORS = {"bad_frame": BadFrame, "bad_message": BadMessage}


def test_fixtures_are_there():
    assert len(GOOD) == 18 and len(BAD) == 27


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.stem)
def test_good_frame_decodes_and_re_encodes_to_the_same_bytes(path):
    data = path.read_bytes()
    message = decode_message(data)
    assert message.request_id == 5
    assert encode_message(message.request_id, message.name, message.body) == data


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_frame_is_refused_by_name(path):
    code = path.stem.split("--")[0]
    with pytest.raises(ERRORS[code]) as caught:
        decode_message(path.read_bytes())
    assert type(caught.value) is ERRORS[code]
    assert caught.value.message


def test_step_fixture_values():
    plan = decode_message((FRAMES / "good" / "step.bin").read_bytes()).body
    assert isinstance(plan, StepPlan)
    assert plan.step_id == 41 and plan.num_seqs == 3
    assert plan.seed.dtype == np.int64 and plan.seed[1] == 2**62 + 3
    assert plan.flags.tolist() == [1, 3, 5]
    assert plan.grammar_ids.tolist() == [-1, 0, 2**31 - 1]
    assert plan.num_tokens == int(plan.num_new_tokens.sum())
    assert len(plan.kv_pages) == 2 * plan.num_tokens
    plan.token_ids[0] = 0  # decoded arrays are the receiver's own, writable


def test_step_result_fixture_keeps_nan_and_tiny_floats():
    result = decode_message((FRAMES / "good" / "step_result.bin").read_bytes()).body
    assert isinstance(result, StepResult)
    assert np.isnan(result.logprobs[0]) and result.sample_ms == 1e-7
    assert result.top_ids.tolist() == [31999, 5, 6]
    assert result.grammar_errors.tolist() == [0, 1]


def test_grammar_fixtures_carry_their_source_and_codes():
    compile_ = decode_message((FRAMES / "good" / "compile_grammar.bin").read_bytes()).body
    assert compile_.grammar_id == 2**32 - 1 and compile_.kind == "json_schema"
    assert compile_.source == '{"type":"object","properties":{"ü":{"enum":["a\\"b"]}}}'
    error = decode_message((FRAMES / "good" / "error_grammar.bin").read_bytes()).body
    assert error.code == "grammar_invalid"


def test_ready_fixture_is_a_dict_with_modules_in_canonical_order():
    ready = decode_message((FRAMES / "good" / "ready.bin").read_bytes()).body
    assert list(ready["modules"]) == ["q", "k", "v", "o", "gate", "up", "down"]
    assert ready["eos_token_ids"] == [2, 2**32 - 1]


def test_header_names_each_problem():
    ok = encode_message(1, "ok", None)
    with pytest.raises(BadFrame, match="bad magic"):
        read_header(b"XXXX" + ok[4:])
    with pytest.raises(BadFrame, match="version 7"):
        read_header(ok[:4] + struct.pack("<H", 7) + ok[6:])
    with pytest.raises(BadFrame, match="over the limit"):
        read_header(ok[:12] + struct.pack("<I", MAX_PAYLOAD_BYTES + 1))
    assert read_header(ok[:12] + struct.pack("<I", MAX_PAYLOAD_BYTES)).payload_length == (
        MAX_PAYLOAD_BYTES
    )


def test_encoder_refuses_what_the_decoder_would():
    pages = np.arange(4, dtype=np.int64)
    with pytest.raises(BadMessage, match="pages must be i32"):
        encode_message(1, "load_adapter", LoadAdapter(adapter_id=1, pages=pages))
    with pytest.raises(BadMessage, match="adapter_id"):
        encode_message(1, "load_adapter", LoadAdapter(adapter_id=-1, pages=pages.astype(np.int32)))
    with pytest.raises(BadMessage, match="not a u32"):
        encode_message(2**32, "ok", None)
    with pytest.raises(BadMessage, match="unknown message"):
        encode_message(1, "hello", None)
    with pytest.raises(BadMessage, match="carries no body"):
        encode_message(1, "ok", {})
    with pytest.raises(BadMessage, match=r"\['gpu_util'\] are not in PROTOCOL.md"):
        encode_message(1, "stats_result", {"gpu_util": 0.5})
    with pytest.raises(BadMessage, match='"host_cache_adapters" is missing'):
        encode_message(1, "stats_result", {"host_cache_bytes": 1})


def test_numpy_scalars_from_the_executor_are_accepted():
    stats = {
        "host_cache_bytes": np.int64(5),
        "host_cache_adapters": np.int32(1),
        "pool_adapters": 0,
        "live_seqs": 0,
        "steps": np.uint64(9),
        "device_memory_bytes": 0,
    }
    decoded = decode_message(encode_message(3, "stats_result", stats))
    assert decoded.body["steps"] == 9 and type(decoded.body["steps"]) is int


def test_payload_over_the_limit_is_refused_before_sending():
    pages = np.zeros(MAX_PAYLOAD_BYTES // 4, np.int32)
    with pytest.raises(BadMessage, match="over the limit"):
        encode_message(1, "load_adapter", LoadAdapter(adapter_id=1, pages=pages))


def test_read_frame_splits_a_stream_and_names_a_cut_one():
    frames = [path.read_bytes() for path in GOOD]
    stream = io.BytesIO(b"".join(frames))
    assert [read_frame(stream) for _ in frames] == frames
    assert read_frame(stream) is None
    with pytest.raises(BadFrame, match="truncated"):
        read_frame(io.BytesIO(frames[0][:10]))
    with pytest.raises(BadFrame, match="EOF after"):
        read_frame(io.BytesIO(frames[0][:-1]))
