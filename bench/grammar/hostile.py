"""Slow or hostile schemas: compile time, first-mask time, and whether the engine bounds them.

usage: python hostile.py [TOKENIZER]  -> results/hostile_TOKENIZER.json
Each case runs in a child process with a 60 s limit (a C++ compile cannot be cancelled from a
Python thread: the executor must bound it the same way, or by the engine's own limits).
"""

import json
import multiprocessing as mp
import pathlib
import sys
import time

CASES = {
    "pattern [a-z]{500,2000}": {"type": "string", "pattern": "^[a-z]{500,2000}$"},
    "pattern .{0,10000}": {"type": "string", "pattern": "^.{0,10000}$"},
    "pattern (a+)+ (ReDoS shape)": {"type": "string", "pattern": "^(a+)+$"},
    "maxLength 100000": {"type": "string", "minLength": 5000, "maxLength": 100000},
    "60 optional properties": {
        "type": "object",
        "properties": {f"p{i}": {"type": "integer"} for i in range(60)},
        "additionalProperties": False,
    },
    "enum of 5000 strings": {"enum": [f"value-{i}" for i in range(5000)]},
    "nesting depth 60": None,  # built below
    "anyOf of 300 objects": {
        "anyOf": [
            {
                "type": "object",
                "properties": {"k": {"const": i}, f"v{i}": {"type": "string"}},
                "required": ["k"],
                "additionalProperties": False,
            }
            for i in range(300)
        ]
    },
    "integer range +-1e15": {"type": "integer", "minimum": -(10**15), "maximum": 10**15},
    "number range 0.001..1e9": {"type": "number", "minimum": 0.001, "maximum": 1e9},
    "array minItems 2000": {
        "type": "array",
        "items": {"type": "integer"},
        "minItems": 2000,
        "maxItems": 4000,
    },
}
d = {"type": "integer"}
for _i in range(60):
    d = {"type": "object", "properties": {"n": d}, "required": ["n"], "additionalProperties": False}
CASES["nesting depth 60"] = d


def child(eng_name, tok, schema, q):
    import engines
    import torch

    eng = engines.ENGINES[eng_name](tok)
    t0 = time.perf_counter()
    try:
        c = eng.compile("json", schema)
    except engines.CompileError as e:
        q.put({"compile_s": time.perf_counter() - t0, "error": str(e)[:300]})
        return
    t1 = time.perf_counter()
    m = c.matcher()
    bm = torch.full((1, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
    m.fill(bm)
    t2 = time.perf_counter()
    q.put({"compile_s": t1 - t0, "first_mask_s": t2 - t1, "error": m.error() or None})


def main():
    tok = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    out = {}
    ctx = mp.get_context("spawn")
    for name, schema in CASES.items():
        out[name] = {}
        for eng in ("llguidance", "xgrammar"):
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(eng, tok, schema, q))
            t0 = time.perf_counter()
            p.start()
            p.join(60)
            if p.is_alive():
                p.kill()
                p.join()
                r = {"timeout_s": 60}
            else:
                r = q.get() if not q.empty() else {"crashed": p.exitcode}
            r["wall_s_incl_process_start"] = round(time.perf_counter() - t0, 2)
            out[name][eng] = r
            print(name, eng, json.dumps(r), flush=True)
    pathlib.Path(f"results/hostile_{tok}.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
