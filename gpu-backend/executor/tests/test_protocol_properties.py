"""Property tests: any valid message survives encode -> decode -> encode byte for byte,
and any cut or corrupted frame is refused by name, never accepted or crashed on."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lorafleet_executor.errors import BadFrame, BadMessage
from lorafleet_executor.protocol.codec import decode_message, encode_message
from lorafleet_executor.protocol.messages import StagedAdapter, StepPlan, StepResult

CASES = 300  # per property

u32 = st.integers(0, 2**32 - 1)
count = st.integers(0, 2**53 - 1)
finite = st.floats(allow_nan=False, allow_infinity=False)
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)


def arrays(dtype, size):
    return hnp.arrays(np.dtype(dtype), size)


@st.composite
def step_plans(draw):
    num_seqs = draw(st.integers(0, 6))
    new = draw(arrays(np.int32, num_seqs).map(lambda a: np.abs(a % 5).astype(np.int32)))
    tokens = int(new.sum())
    per_seq = {
        name: draw(arrays(dtype, num_seqs))
        for name, dtype in [
            ("seq_ids", np.uint32),
            ("flags", np.uint8),
            ("num_cached", np.int32),
            ("num_prompt", np.int32),
            ("adapter_ids", np.int32),
            ("temperature", np.float32),
            ("top_p", np.float32),
            ("top_k", np.int32),
            ("min_p", np.float32),
            ("presence_penalty", np.float32),
            ("frequency_penalty", np.float32),
            ("repetition_penalty", np.float32),
            ("seed", np.int64),
            ("logprobs", np.int32),
            ("grammar_ids", np.int32),
        ]
    }
    prefix = draw(st.integers(0, 6))
    return StepPlan(
        step_id=draw(u32),
        free_seq_ids=draw(st.integers(0, 4).flatmap(lambda n: arrays(np.uint32, n))),
        num_new_tokens=new,
        token_ids=draw(arrays(np.int32, tokens)),
        kv_pages=draw(arrays(np.int32, 2 * tokens)),
        prefix_token_ids=draw(arrays(np.int32, prefix)),
        prefix_kv_pages=draw(arrays(np.int32, 2 * prefix)),
        **per_seq,
    )


@st.composite
def step_results(draw):
    rows = draw(st.integers(0, 5))
    counts = draw(st.lists(st.integers(0, 3), min_size=rows, max_size=rows))
    return StepResult(
        step_id=draw(u32),
        seq_ids=draw(arrays(np.uint32, rows)),
        tokens=draw(arrays(np.int32, rows)),
        logprobs=draw(arrays(np.float32, rows)),
        top_counts=np.array(counts, np.int32),
        top_ids=draw(arrays(np.int32, sum(counts))),
        top_logprobs=draw(arrays(np.float32, sum(counts))),
        grammar_errors=draw(arrays(np.uint8, rows)),
        forward_ms=draw(finite),
        sample_ms=draw(finite),
    )


messages = st.one_of(
    step_plans().map(lambda p: ("step", p)),
    step_results().map(lambda r: ("step_result", r)),
    st.fixed_dictionaries(
        {
            "adapter_id": u32,
            "rank": count,
            "scale": finite,
            "targets": st.lists(text, max_size=7),
            "num_pages": count,
            "host_bytes": count,
        }
    ).map(lambda d: ("adapter_staged", StagedAdapter(**d))),
    st.fixed_dictionaries(
        {
            k: count
            for k in (
                "host_cache_bytes",
                "host_cache_adapters",
                "pool_adapters",
                "live_seqs",
                "steps",
                "device_memory_bytes",
            )
        }
    ).map(lambda d: ("stats_result", d)),
    st.sampled_from(["stats", "ok", "shutdown"]).map(lambda n: (n, None)),
)


def assert_same(a, b):
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same(a[key], b[key])
    elif hasattr(a, "__dataclass_fields__"):
        assert_same(vars(a), vars(b))
    else:
        assert a == b and type(a) is type(b)


@settings(max_examples=CASES, deadline=None)
@given(messages, u32)
def test_round_trip_is_exact(message, request_id):
    name, body = message
    data = encode_message(request_id, name, body)
    decoded = decode_message(data)
    assert (decoded.request_id, decoded.name) == (request_id, name)
    if body is not None:
        assert_same(body, decoded.body)
    assert encode_message(decoded.request_id, decoded.name, decoded.body) == data


@settings(max_examples=CASES, deadline=None)
@given(messages, st.data())
def test_cut_frames_are_refused_as_bad_frame(message, data):
    frame = encode_message(1, *message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    try:
        decode_message(frame[:cut])
    except BadFrame:
        return
    raise AssertionError(f"a frame cut at {cut} of {len(frame)} bytes was accepted")


@settings(max_examples=CASES, deadline=None)
@given(messages, st.data())
def test_a_flipped_byte_is_refused_or_decodes_cleanly(message, data):
    frame = bytearray(encode_message(1, *message))
    at = data.draw(st.integers(0, len(frame) - 1))
    frame[at] ^= data.draw(st.integers(1, 255))
    try:
        decoded = decode_message(bytes(frame))
    except (BadFrame, BadMessage):
        return
    # A flip inside array data or a meta value can still make a valid message (not
    # always in canonical form, e.g. a digit turned into a space): it must re-encode.
    again = encode_message(decoded.request_id, decoded.name, decoded.body)
    assert decode_message(again).name == decoded.name
