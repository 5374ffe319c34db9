"""The executor's protocol server: connects to the engine's Unix socket and carries out
its requests (PROTOCOL.md).

    python -m lorafleet_executor.server --socket /tmp/lorafleet-x/executor.sock

Threads: the reader decodes frames and answers `stats` itself; `step`s run in order on
the step thread; `stage_adapter`, `load_adapter` and `drop_adapter` run in order on the
adapter thread, so a load never holds up the steps sent after it. Replies go out in the
order the work finishes, each under the request id it answers.

Exit codes: 0 after `shutdown` or when the engine closes the socket (it is gone; nobody
is left to serve), 2 when the socket cannot be reached, 3 after a bad frame (the stream
is out of sync; the engine restarts us).
"""

import argparse
import logging
import os
import queue
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from .errors import BadFrame, BadMessage, ExecutorError
from .protocol import (
    HEADER,
    MAGIC,
    ErrorReply,
    Message,
    decode_message,
    encode_message,
    read_header,
)

EXIT_OK = 0
EXIT_NO_SOCKET = 2
EXIT_BAD_FRAME = 3

log = logging.getLogger("lorafleet_executor.server")

REQUESTS = {"init", "stage_adapter", "load_adapter", "drop_adapter", "step", "stats", "shutdown"}
ADAPTER_WORK = {"stage_adapter", "load_adapter", "drop_adapter"}


class Server:
    """Serves one engine connection until shutdown, EOF or a bad frame; `run` returns the
    process's exit code."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.stream = sock.makefile("rb")
        self.executor: Any = None
        self.send_lock = threading.Lock()
        self.step_queue: queue.Queue[Message | None] = queue.Queue()
        self.adapter_queue: queue.Queue[Message | None] = queue.Queue()
        self.workers = [
            threading.Thread(target=self._work, args=(q,), name=name, daemon=True)
            for name, q in (("step", self.step_queue), ("adapter", self.adapter_queue))
        ]

    def run(self) -> int:
        for worker in self.workers:
            worker.start()
        while True:
            head = self.stream.read(HEADER.size)
            if not head:
                log.info("the engine closed the socket; exiting")
                return EXIT_OK
            try:
                header = read_header(head)
                payload = self.stream.read(header.payload_length)
                if len(payload) < header.payload_length:
                    log.info("the engine closed the socket inside a frame; exiting")
                    return EXIT_OK
            except BadFrame as error:
                log.error("bad frame, closing the connection: %s", error.message)
                self._send_error(_request_id_of(head), error)
                return EXIT_BAD_FRAME
            try:
                message = decode_message(head + payload)
            except BadMessage as error:
                log.warning("bad message (request %d): %s", header.request_id, error.message)
                self._send_error(header.request_id, error)
                continue
            if message.name == "shutdown":
                return self._shutdown(message.request_id)
            self._dispatch(message)

    def _dispatch(self, message: Message) -> None:
        name = message.name
        if name not in REQUESTS:
            self._send_error(message.request_id, BadMessage(f"{name} is not a request"))
        elif name == "init":
            self._guarded(message, self._init)
        elif self.executor is None:
            self._send_error(message.request_id, BadMessage(f"{name} before init"))
        elif name == "stats":
            self._guarded(message, lambda m: self._send(m, "stats_result", self.executor.stats()))
        elif name == "step":
            self.step_queue.put(message)
        else:
            self.adapter_queue.put(message)

    def _init(self, message: Message) -> None:
        if self.executor is not None:
            raise BadMessage("init twice: the executor is already initialized")
        log.info("init: %s", message.body)
        self.executor = _make_executor(message.body)
        info = self.executor.ready_info()
        log.info("ready: %s", info)
        self._send(message, "ready", info)

    def _work(self, work: "queue.Queue[Message | None]") -> None:
        while (message := work.get()) is not None:
            self._guarded(message, self._carry_out)

    def _carry_out(self, message: Message) -> None:
        body = message.body
        if message.name == "step":
            self._send(message, "step_result", self.executor.step(body))
        elif message.name == "stage_adapter":
            staged = self.executor.stage_adapter(body.adapter_id, body.path)
            self._send(message, "adapter_staged", staged)
        elif message.name == "load_adapter":
            self.executor.load_adapter(body.adapter_id, body.pages)
            self._send(message, "ok", None)
        else:
            self.executor.drop_adapter(body.adapter_id, body.tier)
            self._send(message, "ok", None)

    def _guarded(self, message: Message, handle: Callable[[Message], None]) -> None:
        """Runs `handle`; any failure becomes an `error` reply to this request only."""
        try:
            handle(message)
        except ExecutorError as error:
            log.warning("%s (request %d) failed: %s", message.name, message.request_id, error)
            self._send_error(message.request_id, error)
        except Exception as error:
            log.error(
                "%s (request %d) crashed:\n%s",
                message.name,
                message.request_id,
                traceback.format_exc(),
            )
            self._send_error(
                message.request_id,
                ExecutorError(f"{message.name} crashed: {type(error).__name__}: {error}"),
            )

    def _shutdown(self, request_id: int) -> int:
        log.info("shutdown: finishing queued work")
        for work in (self.step_queue, self.adapter_queue):
            work.put(None)
        for worker in self.workers:
            worker.join()
        self._write(encode_message(request_id, "ok", None))
        log.info("shutdown: done")
        return EXIT_OK

    def _send(self, request: Message, name: str, body: Any) -> None:
        self._write(encode_message(request.request_id, name, body))

    def _send_error(self, request_id: int, error: ExecutorError) -> None:
        reply = ErrorReply(error.code, error.message, request_id)
        self._write(encode_message(request_id, "error", reply))

    def _write(self, frame: bytes) -> None:
        try:
            with self.send_lock:
                self.sock.sendall(frame)
        except OSError as error:
            # The engine is gone; nobody is left to answer. Leave at once, even from a
            # worker thread in the middle of a step.
            log.info("the engine's socket broke (%s); exiting", error)
            _exit(EXIT_OK)


def _request_id_of(head: bytes) -> int:
    """The request id of a bad frame, when its header can be trusted that far."""
    if len(head) >= 12 and struct.unpack_from("<I", head)[0] == MAGIC:
        return struct.unpack_from("<I", head, 8)[0]
    return 0


def _exit(code: int) -> None:
    sys.stderr.flush()
    os._exit(code)


def _make_executor(config: Any) -> Any:
    # Imported here, not at the top: torch takes seconds to import, and the protocol
    # loop (and its tests) must not wait for it before the first frame.
    from .executor import Executor

    return Executor(config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lorafleet_executor.server")
    parser.add_argument("--socket", required=True, help="the engine's Unix socket path")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level, format="executor %(levelname)s %(message)s"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(args.socket)
    except OSError as error:
        log.error("cannot connect to the engine at %s: %s", args.socket, error)
        _exit(EXIT_NO_SOCKET)
    log.info("connected to %s (pid %d)", args.socket, os.getpid())
    # os._exit, not sys.exit: a worker may be inside a long torch call, and the engine
    # expects the process gone when this returns.
    _exit(Server(sock).run())


if __name__ == "__main__":
    main()
