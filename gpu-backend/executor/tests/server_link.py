"""Test support: plays the engine's end of the socket against a real server process."""

import socket
import subprocess
import sys
from pathlib import Path

from lorafleet_executor.protocol import Message, decode_message, encode_message, read_frame


class EngineEnd:
    """Listens like the engine, starts `python -m lorafleet_executor.server`, accepts it."""

    def __init__(self, folder: Path, timeout: float = 20.0) -> None:
        path = folder / "engine.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.listener.settimeout(timeout)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lorafleet_executor.server", "--socket", str(path)],
            stderr=subprocess.PIPE,
        )
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
        return self.process.stderr.read().decode() if self.process.poll() is not None else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process.stderr.close()
        self.stream.close()
        self.conn.close()
        self.listener.close()
