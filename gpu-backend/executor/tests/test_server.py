"""The protocol server as a real process on a real Unix socket, without a model:
request/reply framing, named errors, and how it ends (shutdown, EOF, bad frame)."""

import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lorafleet_executor.protocol.codec import decode_message, encode_message
from lorafleet_executor.protocol.frame import HEADER, MAGIC, MAX_PAYLOAD_BYTES, read_frame
from lorafleet_executor.protocol.messages import Message, StageAdapter
from lorafleet_executor.runtime.server import EXIT_BAD_FRAME, EXIT_NO_SOCKET, EXIT_OK


class EngineEnd:
    """Listens like the engine, starts `python -m lorafleet_executor`, accepts it."""

    def __init__(
        self,
        folder: Path,
        timeout: float = 20.0,
        flags: tuple[str, ...] = (),
        log: Path | None = None,
    ) -> None:
        """`log`: where the executor's stderr goes (default a pipe `stderr()` reads at the
        end; one that logs more than a pipe holds, unread, blocks)."""
        path = folder / "engine.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(timeout)
        stderr = subprocess.PIPE if log is None else log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lorafleet_executor", "--socket", str(path), *flags],
            stderr=stderr,
        )
        if log is not None:
            stderr.close()  # the child has its own
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(timeout)
        self.stream = self.conn.makefile("rb")

    def send(self, request_id: int, name: str, body=None) -> None:
        self.conn.sendall(encode_message(request_id, name, body))

    def send_raw(self, frame: bytes) -> None:
        self.conn.sendall(frame)

    def receive(self) -> Message:
        frame = read_frame(self.stream)
        assert frame is not None, "the server closed the connection"
        return decode_message(frame)

    def at_eof(self) -> bool:
        return read_frame(self.stream) is None

    def exit_code(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout)

    def stderr(self) -> str:
        if self.process.stderr is None or self.process.poll() is None:
            return ""
        return self.process.stderr.read().decode()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        self.stream.close()
        self.conn.close()
        self.listener.close()


@pytest.fixture
def engine(tmp_path):
    end = EngineEnd(tmp_path)
    yield end
    end.close()


def test_requests_before_init_are_refused_by_name_and_shutdown_exits_0(engine):
    engine.send(7, "stats")
    engine.send(8, "stage_adapter", StageAdapter(1, "/nowhere"))
    for request_id, name in ((7, "stats"), (8, "stage_adapter")):
        reply = engine.receive()
        assert (reply.request_id, reply.name) == (request_id, "error")
        assert reply.body.code == "bad_message" and reply.body.request_id == request_id
        assert f"{name} before init" in reply.body.message
    engine.send(9, "shutdown")
    reply = engine.receive()
    assert (reply.request_id, reply.name) == (9, "ok")
    assert engine.at_eof()
    assert engine.exit_code() == EXIT_OK


def test_a_bad_message_is_answered_and_the_connection_stays(engine):
    meta = b'{"arrays":[]}'
    payload = struct.pack("<I", len(meta)) + meta + bytes(-(4 + len(meta)) % 8)
    engine.send_raw(HEADER.pack(MAGIC, 1, 99, 41, len(payload)) + payload)
    reply = engine.receive()
    assert (reply.request_id, reply.body.code) == (41, "bad_message")
    assert "unknown message type 99" in reply.body.message
    engine.send(42, "ok")  # a reply, not a request
    reply = engine.receive()
    assert (reply.request_id, reply.body.code) == (42, "bad_message")
    assert "ok is not a request" in reply.body.message
    engine.send(43, "shutdown")
    assert engine.receive().name == "ok"
    assert engine.exit_code() == EXIT_OK


def test_bad_magic_is_answered_bad_frame_then_the_connection_closes(engine):
    engine.send_raw(b"NOPE" + bytes(12))
    reply = engine.receive()
    assert (reply.request_id, reply.body.code) == (0, "bad_frame")
    assert "bad magic" in reply.body.message
    assert engine.at_eof()
    assert engine.exit_code() == EXIT_BAD_FRAME
    assert "bad frame" in engine.stderr()


def test_a_frame_over_the_length_limit_carries_its_request_id(engine):
    engine.send_raw(HEADER.pack(MAGIC, 1, 9, 77, MAX_PAYLOAD_BYTES + 1))
    reply = engine.receive()
    assert (reply.request_id, reply.body.code) == (77, "bad_frame")
    assert "over the limit" in reply.body.message
    assert engine.exit_code() == EXIT_BAD_FRAME


def test_eof_from_the_engine_ends_the_executor(engine):
    engine.conn.shutdown(2)
    assert engine.exit_code() == EXIT_OK
    assert "closed the socket" in engine.stderr()


def test_eof_inside_a_frame_ends_the_executor(engine):
    engine.send_raw(HEADER.pack(MAGIC, 1, 9, 1, 100) + bytes(10))
    engine.conn.shutdown(2)
    assert engine.exit_code() == EXIT_OK


def test_no_engine_socket_exits_2_naming_the_path(tmp_path):
    missing = tmp_path / "nobody.sock"
    run = subprocess.run(
        [sys.executable, "-m", "lorafleet_executor", "--socket", str(missing)],
        capture_output=True,
        timeout=30,
    )
    assert run.returncode == EXIT_NO_SOCKET
    assert str(missing) in run.stderr.decode()


def test_the_server_module_does_not_import_torch():
    # torch takes seconds to import; the protocol loop must not wait for it before the
    # first frame (server._make_executor imports the executor on init).
    check = "import sys, lorafleet_executor.runtime.server; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
