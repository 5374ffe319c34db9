"""Mutation fuzzing of real frames against the real executor over its socket
(PROTOCOL.md "Bad frames"). Every frame, however broken, is answered: an `error` under
its request id, or the reply its message asks for; one whose header cannot be trusted is
answered `bad_frame` (under request id 0, or its own when that much of the header reads)
and the executor exits 3. Never a hang, never another exit. The codecs' own property
tests (test_protocol_properties.py, src/protocol/*.property.test.ts) check decoding in
process; these send the bytes to the running server, before init and with the tiny model
loaded, where a plan that decodes is also checked against the pool and run."""

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server import EngineEnd
from test_server_model import one_seq_plan

from lorafleet_executor.fixtures.location import fixtures_root
from lorafleet_executor.protocol.codec import encode_message
from lorafleet_executor.protocol.frame import HEADER, MAGIC, pad8
from lorafleet_executor.protocol.messages import InitConfig
from lorafleet_executor.runtime.server import EXIT_BAD_FRAME

CASES = {"payload": 1500, "header": 30, "step": 1200}  # per property; the README's figures
GOOD = sorted((Path(__file__).parent / "frames" / "good").glob("*.bin"))
TINY = fixtures_root(os.environ) / "tiny-llama"
REPLY_S = 20.0  # an answer later than this is a hang
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Executor:
    """A running executor to send frames to; a new one once the last has ended."""

    def __init__(self, folder: Path, init: InitConfig | None = None) -> None:
        self.folder, self.init = folder, init
        self.end: EngineEnd | None = None
        self.starts = 0

    def get(self) -> EngineEnd:
        if self.end is None:
            self.starts += 1
            sock = self.folder / str(self.starts)
            sock.mkdir()
            log = sock / "executor.log"  # it logs every refusal: more than a pipe holds
            self.end = EngineEnd(sock, timeout=REPLY_S if self.init is None else 120, log=log)
            self.end.conn.settimeout(REPLY_S)
            if self.init is not None:
                self.end.send(1, "init", self.init)
                assert self.end.receive().name == "ready"
        return self.end

    def ended(self) -> None:
        assert self.end is not None
        self.end.close()
        self.end = None

    def close(self) -> None:
        if self.end is not None:
            self.ended()


def answer(executor: Executor, frame: bytes) -> None:
    """Sends `frame` and checks what comes back (see the module's doc)."""
    end = executor.get()
    request_id = struct.unpack_from("<I", frame, 8)[0] if len(frame) >= 12 else 0
    end.send_raw(frame)
    reply = end.receive()  # a timeout raises: a hang
    if reply.name == "error" and reply.body.code == "bad_frame":
        assert reply.request_id in (0, request_id)
        assert end.at_eof() and end.exit_code() == EXIT_BAD_FRAME
        executor.ended()
        return
    assert reply.request_id == request_id, (reply, frame[:64])
    if reply.name == "error":
        assert reply.body.code != "internal", reply.body.message  # a crash in a handler
    elif struct.unpack_from("<H", frame, 6)[0] == 11:  # shutdown: ok, then exit 0
        assert reply.name == "ok" and end.exit_code() == 0
        executor.ended()


def with_payload(frame: bytes, payload: bytes, request_id: int | None = None) -> bytes:
    """`frame`'s header over `payload`, its length fixed (the frame stays readable)."""
    magic, version, type_, rid, _ = HEADER.unpack_from(frame)
    rid = rid if request_id is None else request_id
    return HEADER.pack(magic, version, type_, rid, len(payload)) + payload


def split(frame: bytes) -> tuple[dict, bytes]:
    """A frame's meta and the bytes after it (its arrays)."""
    meta_len = struct.unpack_from("<I", frame, HEADER.size)[0]
    meta = json.loads(frame[HEADER.size + 4 : HEADER.size + 4 + meta_len])
    return meta, frame[HEADER.size + pad8(4 + meta_len) :]


def joined(frame: bytes, meta: object, arrays: bytes) -> bytes:
    text = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode()
    body = struct.pack("<I", len(text)) + text
    return with_payload(frame, body + b"\0" * (pad8(len(body)) - len(body)) + arrays)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated(draw, frames: list[bytes]) -> bytes:
    """A real frame, its payload or meta changed, its length kept true."""
    frame = draw(st.sampled_from(frames))
    payload = bytearray(frame[HEADER.size :])
    how = draw(st.sampled_from(["bytes", "meta", "cut", "grow", "type", "request_id"]))
    if how == "bytes" and payload:
        for _ in range(draw(st.integers(1, 8))):
            payload[draw(st.integers(0, len(payload) - 1))] = draw(st.integers(0, 255))
    elif how == "meta":
        meta, arrays = split(frame)
        key = draw(st.sampled_from([*meta, "arrays", "extra"]))
        if draw(st.booleans()) and key in meta:
            del meta[key]
        else:
            meta[key] = draw(json_values)
        return joined(frame, meta, arrays)
    elif how == "cut":
        del payload[draw(st.integers(0, len(payload))) :]
    elif how == "grow":
        payload += draw(st.binary(min_size=1, max_size=64))
    elif how == "type":
        frame = frame[:6] + struct.pack("<H", draw(st.integers(0, 2**16 - 1))) + frame[8:]
    else:
        return with_payload(frame, bytes(payload), draw(st.integers(0, 2**32 - 1)))
    return with_payload(frame, bytes(payload))


@pytest.fixture(scope="module")
def bare(tmp_path_factory):
    executor = Executor(tmp_path_factory.mktemp("bare"))
    yield executor
    executor.close()


@settings(FUZZ, max_examples=CASES["payload"])
@given(frame=mutated([f.read_bytes() for f in GOOD]))
def test_mutated_frames_before_init_are_answered(bare, frame):
    answer(bare, frame)


@settings(FUZZ, max_examples=CASES["header"])
@given(
    frame=st.sampled_from([f.read_bytes() for f in GOOD]),
    field=st.sampled_from(["magic", "version", "length"]),
    value=st.integers(0, 2**32 - 1),
)
def test_untrusted_headers_are_bad_frames_and_end_the_executor(bare, frame, field, value):
    magic, version, type_, request_id, length = HEADER.unpack_from(frame)
    if field == "magic":
        magic = value if value != MAGIC else value ^ 1
    elif field == "version":
        version = value % 2**16 if value % 2**16 != version else version + 1
    else:
        length = (64 << 20) + 1 + value % 2**20
    head = HEADER.pack(magic, version, type_, request_id, length)
    end = bare.get()
    end.send_raw(head)
    reply = end.receive()
    assert (reply.name, reply.body.code) == ("error", "bad_frame")
    assert end.at_eof() and end.exit_code() == EXIT_BAD_FRAME
    bare.ended()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    if not (TINY / "config.json").exists():
        pytest.skip(f"tiny fixture model missing under {TINY} (npm run setup makes it)")
    init = InitConfig(
        model_path=str(TINY), dtype="float32", device="cpu", num_pages=512,
        max_lora_rank=16, max_num_seqs=8, max_num_batched_tokens=64,
        host_cache_bytes=64 << 20, lora_backend="torch", cuda_graphs=False,
    )  # fmt: skip
    executor = Executor(tmp_path_factory.mktemp("loaded"), init)
    executor.live = []  # the seqs the executor holds: freed by the next step
    yield executor
    executor.close()


@settings(FUZZ, max_examples=CASES["step"])
@given(
    tokens=st.lists(st.integers(0, 511), min_size=1, max_size=8),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=6),
    in_meta=st.booleans(),
)
def test_mutated_steps_on_a_loaded_model_are_answered(loaded, tokens, edits, in_meta):
    """A valid step with bytes of its meta or its arrays changed: the executor refuses it
    by name, or runs it and answers its result."""
    loaded.get()
    seq_id = 1000 + loaded.starts * 100_000 + len(loaded.live)
    plan = one_seq_plan(
        7, -1, np.arange(2 * len(tokens)), tuple(tokens), seq_id, tuple(loaded.live)
    )
    frame = encode_message(7, "step", plan)
    meta_len = struct.unpack_from("<I", frame, HEADER.size)[0]
    start = HEADER.size + (4 if in_meta else pad8(4 + meta_len))
    stop = HEADER.size + 4 + meta_len if in_meta else len(frame)
    data = bytearray(frame)
    for at, value in edits:
        data[start + at % (stop - start)] = value
    end = loaded.end
    answer(loaded, bytes(data))
    if loaded.end is not end:  # a new executor: it holds nothing
        loaded.live = []
        return
    # What the executor holds now: its seq, unless the step failed or the edits renamed
    # it. A renamed one is never freed: past a few, a fresh executor.
    live = stats_live(loaded)
    loaded.live = [seq_id] if live else []
    if live > 4:
        loaded.ended()


def stats_live(executor: Executor) -> int:
    end = executor.get()
    end.send(8, "stats")
    reply = end.receive()
    assert reply.name == "stats_result"
    return reply.body["live_seqs"]
