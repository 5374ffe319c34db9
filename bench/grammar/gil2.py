"""GIL release, measured by stalls: a worker thread makes long native calls (one batched mask
fill over 512 rows; one compile of a large schema) while the main thread spins on a pure-Python
loop and records the longest gap between its iterations. If the call held the GIL, the main
thread stalls for about the whole call; if it drops the GIL, gaps stay far below the call time.

usage: python gil2.py [TOKENIZER]  -> results/gil2_TOKENIZER.json
"""

import functools
import json
import pathlib
import sys
import threading
import time

import bench_drive as bd
import engines
import numpy as np
import torch
from gen_schemas import random_schemas

BIG = {
    "anyOf": [
        {
            "type": "object",
            "properties": {
                "k": {"const": i},
                f"v{i}": {"type": "string", "maxLength": 30},
                "n": {"type": "integer", "minimum": 0, "maximum": 10 * i + 7},
            },
            "required": ["k", "n"],
            "additionalProperties": False,
        }
        for i in range(120)
    ]
}


def spin_while(fn):
    done = threading.Event()
    out = {}

    def worker():
        t0 = time.perf_counter()
        fn()
        out["call_ms"] = (time.perf_counter() - t0) * 1e3
        done.set()

    gaps = []
    th = threading.Thread(target=worker)
    last = time.perf_counter()
    th.start()
    while not done.is_set():
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    gaps.append(time.perf_counter() - last)  # the wait until the main thread first saw 'done'
    th.join()
    g = np.array(gaps) * 1e3
    return {
        "call_ms": out["call_ms"],
        "main_max_gap_ms": float(g.max()),
        "main_iterations": len(g) - 1,
    }


def main():
    tok = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    sys.setswitchinterval(0.005)
    res = {"switchinterval_s": sys.getswitchinterval()}
    for E in (engines.LLG, engines.XGR):
        eng = E(tok, threads=1)
        schemas = random_schemas()
        comp = [eng.compile("json", s) for s in schemas]
        rows = []
        rng = np.random.default_rng(0)
        one = torch.full((1, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
        w = bd.weights(bd.token_bytes(eng), {2}, True)
        for i in range(512):
            m = comp[i % len(comp)].matcher()
            bd.biased_walk(eng, m, w, rng, one, int(rng.integers(3, 15)))
            rows.append(m)
        bm = torch.full((512, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
        fills = [spin_while(functools.partial(eng.fill_batch, rows, bm)) for _ in range(5)]
        if eng.name == "xgrammar":
            eng_nc = engines.XGR(tok, threads=1, cache=False)
            compiles = [
                spin_while(functools.partial(eng_nc.compile, "json", BIG)) for _ in range(3)
            ]
        else:
            compiles = [spin_while(functools.partial(eng.compile, "json", BIG)) for _ in range(3)]
        res[eng.name] = {"fill_512_rows": fills, "compile_big_schema": compiles}
        print(eng.name, json.dumps(res[eng.name]), flush=True)
    pathlib.Path(f"results/gil2_{tok}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
