"""The executor's protocol server: connects to the engine's Unix socket and carries out
its requests (PROTOCOL.md).

    python -m lorafleet_executor --socket /tmp/lorafleet-x/executor.sock [flags]

Its flags (options.py) are its only configuration; the rest comes in `init`.

Threads: the reader decodes frames and answers `stats` itself; `step`s run in order on
the step thread, each launched before the samples of the one before are read;
`load_adapter` runs in order on the adapter thread, so a load never holds up the steps
sent after it; `drop_adapter` runs on the reader as it arrives (under tensor
parallelism on the adapter thread, in order with the stages); `stage_adapter`s run on a
pool of `--stage-threads` threads (stage_pool.py), several at once, and a load or drop
of an adapter waits for that adapter's staging. On a GPU each staging thread hands the
parsing to one of as many worker processes (stage_processes.py), so it stays off the
step thread's GIL. Replies go out in the order the work finishes, each under the request
id it answers.

With `--tensor-parallel-size N` (N > 1) this process is rank 0 of a tensor-parallel
group (parallel/README.md): it starts ranks 1..N-1, and every message it acts on (init,
steps, adapter work, shutdown) is broadcast to them before it carries it out itself;
`stats` and refused messages stay here. The engine sees one executor.

Exit codes: 0 after `shutdown` or when the engine closes the socket (it is gone; nobody
is left to serve), 2 when the socket cannot be reached, 3 after a bad frame (the stream
is out of sync; the engine restarts us).
"""

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

from ..errors import BadFrame, BadMessage, ExecutorError
from ..protocol.codec import decode_message, encode_message
from ..protocol.frame import HEADER, MAGIC, read_header
from ..protocol.messages import ErrorReply, GrammarCompiled, Message
from .options import ExecutorOptions, parse_options
from .stage_pool import StagePool
from .step_profiler import StepProfiler

EXIT_OK = 0
EXIT_NO_SOCKET = 2
EXIT_BAD_FRAME = 3

log = logging.getLogger("lorafleet_executor.runtime.server")

# How often the step thread, waiting for the next step, checks whether the launched one
# is done on the device (its result then goes out at once).
STEP_POLL_S = 0.0002
_LAUNCHED_DONE = object()

REQUESTS = {
    "init",
    "stage_adapter",
    "load_adapter",
    "drop_adapter",
    "step",
    "stats",
    "shutdown",
    "compile_grammar",
    "drop_grammar",
}

# (init's config, the tensor-parallel group or None, --stage-threads, the grammar options)
# -> the executor
MakeExecutor = Callable[[Any, Any, int, Any], Any]


class Server:
    """Serves one engine connection until shutdown, EOF or a bad frame; `run` returns the
    process's exit code."""

    def __init__(
        self,
        sock: socket.socket,
        options: ExecutorOptions,
        tp: Any = None,
        make_executor: MakeExecutor | None = None,
    ) -> None:
        self.sock = sock
        self.options = options
        self.tp = tp  # parallel.group.TensorGroup of rank 0, or None
        self.make_executor = make_executor or _make_executor
        # Under tensor parallelism every stage ends in a collective on the `adapters`
        # group (Executor._agreed), and one group's collectives must come in the same
        # order on every rank: stages stay serialized on the adapter thread there.
        self.stagers = StagePool(options.stage_threads) if tp is None else None
        self.stream = sock.makefile("rb")
        self.executor: Any = None
        self.send_lock = threading.Lock()
        self.step_queue: queue.Queue[Message | None] = queue.Queue()
        self.adapter_queue: queue.Queue[Message | None] = queue.Queue()
        self.profiler = None if options.profile is None else StepProfiler(options.profile)
        self.workers = [
            threading.Thread(target=self._steps, name="step", daemon=True),
            threading.Thread(
                target=self._work, args=(self.adapter_queue,), name="adapter", daemon=True
            ),
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
            self._fan_out(message)
            self.step_queue.put(message)
        elif name == "compile_grammar":
            # Bound at once, compiled off this thread; only rank 0 samples, so only it
            # holds grammars.
            self._guarded(message, self._compile_grammar)
        elif name == "drop_grammar":
            # In order with the steps: a step sent before may still start a sequence of it.
            self.step_queue.put(message)
        elif name == "stage_adapter" and self.stagers is not None:
            self.stagers.submit(
                message.body.adapter_id, lambda: self._guarded(message, self._carry_out)
            )
        elif name == "drop_adapter" and self.stagers is not None:
            # At once, not behind queued loads: the engine drops to make room for the
            # stages it sends next, and those run on other threads (PROTOCOL.md
            # `drop_adapter`). It only drops idle adapters, so no step or load reads it.
            self._guarded(message, self._carry_out)
        else:
            self._fan_out(message)
            self.adapter_queue.put(message)

    def _fan_out(self, message: Message) -> None:
        """Rank 0 -> ranks 1..N-1, in the order rank 0 takes the messages in."""
        if self.tp is not None:
            self.tp.send_message(message)

    def _init(self, message: Message) -> None:
        if self.executor is not None:
            raise BadMessage("init twice: the executor is already initialized")
        log.info("init: %s", message.body)
        self._fan_out(message)
        self.executor = self.make_executor(
            message.body, self.tp, self.options.stage_threads, self.options.grammar
        )
        info = self.executor.ready_info()
        log.info("ready: %s", info)
        self._send(message, "ready", info)

    def _compile_grammar(self, message: Message) -> None:
        body = message.body

        def reply(outcome: Any, hit: bool) -> None:
            if isinstance(outcome, ExecutorError):
                self._send_error(message.request_id, outcome)
            else:
                compile_ms = 0.0 if hit else outcome.compile_ms
                self._send(
                    message, "grammar_compiled", GrammarCompiled(body.grammar_id, compile_ms, hit)
                )

        self.executor.compile_grammar(body.grammar_id, body.kind, body.source, reply)

    def _steps(self) -> None:
        """The step thread. It launches a step before it reads the samples of the one
        before (Executor.launch), so the host's share of a step overlaps the GPU's work
        on the last one; replies still go out in step order."""
        launched: tuple[Message, Any] | None = None  # (its message, LaunchedStep)
        while True:
            message = self._next_step(launched)
            if message is not None and message is not _LAUNCHED_DONE:
                if message.name == "drop_grammar":
                    self._guarded(message, self._drop_grammar)
                    continue
                if self.profiler is not None:
                    self.profiler.before_launch()
                try:
                    step = self.executor.launch(message.body)
                except Exception as error:
                    self._finish(launched)
                    launched = None
                    self._send_failure(message, error)
                    continue
            self._finish(launched)
            if message is None:
                return
            launched = None if message is _LAUNCHED_DONE else (message, step)

    def _drop_grammar(self, message: Message) -> None:
        self.executor.drop_grammar(message.body.grammar_id)
        self._send(message, "ok", None)

    def _next_step(self, launched: tuple[Message, Any] | None) -> Any:
        """The next step message, None at shutdown, or _LAUNCHED_DONE when the launched
        step finished on the device before another step came."""
        if launched is None:
            return self.step_queue.get()
        while True:
            try:
                return self.step_queue.get(timeout=STEP_POLL_S)
            except queue.Empty:
                try:
                    done = launched[1].ready()
                except Exception:  # a device error: waiting raises it as the step's reply
                    done = True
                if done:
                    return _LAUNCHED_DONE

    def _finish(self, launched: tuple[Message, Any] | None) -> None:
        if launched is not None:
            message, step = launched
            self._guarded(message, lambda m: self._send(m, "step_result", step.wait()))

    def _work(self, work: "queue.Queue[Message | None]") -> None:
        while (message := work.get()) is not None:
            self._guarded(message, self._carry_out)

    def _carry_out(self, message: Message) -> None:
        body = message.body
        if self.stagers is not None and message.name in ("load_adapter", "drop_adapter"):
            self.stagers.wait_for(body.adapter_id)
        if message.name == "stage_adapter":
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
        except Exception as error:
            self._send_failure(message, error)

    def _send_failure(self, message: Message, error: Exception) -> None:
        """A named error as it is; anything else as a crash of this request."""
        if isinstance(error, ExecutorError):
            log.warning("%s (request %d) failed: %s", message.name, message.request_id, error)
            self._send_error(message.request_id, error)
            return
        log.error(
            "%s (request %d) crashed:\n%s",
            message.name,
            message.request_id,
            "".join(traceback.format_exception(error)),
        )
        self._send_error(
            message.request_id,
            ExecutorError(f"{message.name} crashed: {type(error).__name__}: {error}"),
        )

    def _shutdown(self, request_id: int) -> int:
        log.info("shutdown: finishing queued work")
        self._fan_out(Message(request_id, "shutdown", None))
        for work in (self.step_queue, self.adapter_queue):
            work.put(None)
        for worker in self.workers:
            worker.join()
        if self.stagers is not None:
            self.stagers.shutdown()
        if self.executor is not None:
            self.executor.close()
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


def _make_executor(config: Any, tp: Any, stage_workers: int, grammar: Any) -> Any:
    """The executor of this process: rank 0's share under tensor parallelism, else the
    whole model with `stage_workers` staging processes on a GPU."""
    # Imported here, not at the top: torch takes seconds to import, and the protocol
    # loop (and its tests) must not wait for it before the first frame.
    if tp is not None:
        from .worker import make_rank_executor

        return make_rank_executor(config, tp, grammar)
    from .executor import Executor
    from .init_config import resolve_device
    from .stage_processes import StageProcesses

    # On a GPU, staging in worker processes keeps its CPU work off the step loop's GIL;
    # on the CPU the steps use every core anyway.
    on_gpu = resolve_device(config.device).type == "cuda"
    return Executor(
        config, stagers=StageProcesses(stage_workers) if on_gpu else None, grammar=grammar
    )


def _start_group(size: int, log_level: str) -> Any:
    """Starts ranks 1..size-1 and joins them as rank 0."""
    from ..parallel.group import TensorGroup
    from ..parallel.launch import local_init_method, spawn_workers, use_rank_device

    init_method = local_init_method()
    log.info("tensor parallel: starting %d ranks (%s)", size, init_method)
    spawn_workers(size, init_method, log_level)
    use_rank_device(0)
    return TensorGroup.join(0, size, init_method)


def main(argv: list[str] | None = None, make_executor: MakeExecutor | None = None) -> None:
    """The process: `argv` as the command line; `make_executor` (default: the product's)
    is a seam for tests only, which wrap the executor to inject faults
    (lorafleet_reference/faulty_executor.py): nothing a client sends can reach it."""
    options = parse_options(argv)
    logging.basicConfig(
        stream=sys.stderr, level=options.log_level, format="executor %(levelname)s %(message)s"
    )
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(options.socket)
    except OSError as error:
        log.error("cannot connect to the engine at %s: %s", options.socket, error)
        _exit(EXIT_NO_SOCKET)
    log.info("connected to %s (pid %d)", options.socket, os.getpid())
    size = options.tensor_parallel_size
    tp = _start_group(size, options.log_level) if size > 1 else None
    # os._exit, not sys.exit: a worker may be inside a long torch call, and the engine
    # expects the process gone when this returns (ranks 1..N-1 die with it).
    _exit(Server(sock, options, tp, make_executor).run())
