"""The Python end of the TS cross-language test (src/executor/protocol.cross.test.ts).

cross_language.py echo            decode each frame on stdin, write its re-encoding
cross_language.py generate N SEED write N random valid frames of every message type
"""

import sys

import numpy as np

from lorafleet_executor.protocol.codec import decode_message, encode_message
from lorafleet_executor.protocol.frame import read_frame
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
from lorafleet_executor.protocol.schema import ERROR_CODES, GRAMMAR_KINDS, MODULE_NAMES


def echo() -> None:
    while (frame := read_frame(sys.stdin.buffer)) is not None:
        message = decode_message(frame)
        sys.stdout.buffer.write(encode_message(message.request_id, message.name, message.body))
    sys.stdout.buffer.flush()


def generate(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def ints(dtype, size):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size, dtype=dtype, endpoint=True)

    def floats(size):
        return rng.standard_normal(size).astype(np.float32) * np.float32(10.0) ** rng.integers(
            -30, 30, size
        ).astype(np.float32)

    def number():
        # wide exponents exercise the shortest-digits and exponent forms of both printers
        return float(rng.standard_normal() * 10.0 ** rng.integers(-30, 30))

    def count():
        return int(rng.integers(0, 2**53 - 1))

    def text():
        code_points = rng.integers(1, 0x10FFFF, rng.integers(0, 12))
        return "".join(chr(c) for c in code_points if not 0xD800 <= c < 0xE000)

    def step():
        s = int(rng.integers(0, 7))
        new = rng.integers(0, 5, s).astype(np.int32)
        t = int(new.sum())
        return StepPlan(
            int(rng.integers(0, 2**32)),
            ints(np.uint32, int(rng.integers(0, 4))),
            ints(np.uint32, s),
            ints(np.uint8, s),
            new,
            *(ints(np.int32, s) for _ in range(3)),
            floats(s),
            floats(s),
            ints(np.int32, s),
            *(floats(s) for _ in range(4)),
            ints(np.int64, s),
            ints(np.int32, s),
            ints(np.int32, t),
            ints(np.int32, 2 * t),
            ints(np.int32, s),  # grammar_ids, then the prefix arrays (the dataclass's order)
            *(ints(np.int32, k * p) for p in [int(rng.integers(0, 7))] for k in (1, 2)),
        )

    def step_result():
        rows = int(rng.integers(0, 5))
        counts = rng.integers(0, 4, rows).astype(np.int32)
        k = int(counts.sum())
        return StepResult(
            int(rng.integers(0, 2**32)),
            ints(np.uint32, rows),
            ints(np.int32, rows),
            floats(rows),
            counts,
            ints(np.int32, k),
            floats(k),
            ints(np.uint8, rows),
            number(),
            number(),
        )

    makers = {
        "init": lambda: InitConfig(
            text(),
            "float16",
            "cuda",
            count(),
            number(),
            count(),
            count(),
            count(),
            count(),
            "triton",
            bool(rng.integers(0, 2)),
            ("auto", "fp8")[int(rng.integers(0, 2))],
        ),
        "ready": lambda: {
            **{k: count() for k in ("num_pages", "page_width", "num_layers", "hidden_size")},
            **{k: count() for k in ("intermediate_size", "num_heads", "num_kv_heads")},
            **{k: count() for k in ("head_dim", "vocab_size", "max_position")},
            **{k: count() for k in ("host_cache_bytes", "max_adapter_host_bytes")},
            "dtype": text(),
            "device": text(),
            "modules": {m: [count(), count()] for m in MODULE_NAMES},
            "eos_token_ids": [int(x) for x in ints(np.uint32, 3)],
            "quantization": ("none", "fp8")[int(rng.integers(0, 2))],
        },
        "stage_adapter": lambda: StageAdapter(int(rng.integers(0, 2**32)), text()),
        "adapter_staged": lambda: StagedAdapter(
            int(rng.integers(0, 2**32)), count(), number(), [text(), text()], count(), count()
        ),
        "load_adapter": lambda: LoadAdapter(int(rng.integers(0, 2**32)), ints(np.int32, 9)),
        "drop_adapter": lambda: DropAdapter(int(rng.integers(0, 2**32)), "pool"),
        "step": step,
        "step_result": step_result,
        "stats": lambda: None,
        "stats_result": lambda: {
            k: count()
            for k in (
                "host_cache_bytes",
                "host_cache_adapters",
                "pool_adapters",
                "live_seqs",
                "steps",
                "device_memory_bytes",
            )
        },
        "shutdown": lambda: None,
        "ok": lambda: None,
        "error": lambda: ErrorReply(str(rng.choice(ERROR_CODES)), text(), count() % 2**32),
        "compile_grammar": lambda: CompileGrammar(
            int(rng.integers(0, 2**32)), str(rng.choice(GRAMMAR_KINDS)), text()
        ),
        "grammar_compiled": lambda: GrammarCompiled(
            int(rng.integers(0, 2**32)), abs(number()), bool(rng.integers(0, 2))
        ),
        "drop_grammar": lambda: DropGrammar(int(rng.integers(0, 2**32))),
    }
    names = list(makers)
    for i in range(n):
        name = names[i % len(names)]
        sys.stdout.buffer.write(encode_message(i, name, makers[name]()))
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    if sys.argv[1] == "echo":
        echo()
    else:
        generate(int(sys.argv[2]), int(sys.argv[3]))
