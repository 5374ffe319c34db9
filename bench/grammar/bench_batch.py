"""Batch mask fill: 64 live sequences, each with its own JSON schema, SmolLM2 vocab (49152).

usage: python bench_batch.py ENGINE TOKENIZER THREADS MODE [STEPS] [BATCH] [cold]
(MODE: batch | serial)
'cold': every new row compiles its schema afresh (untimed), so no lexer/mask state is shared with an
earlier row of the same schema (llguidance builds lexer states lazily, during fills).
        -> appends one JSON line to results/batch.jsonl

Per decode step: fill the [B, ceil(V/32)] int32 bitmask for all rows (timed: the engine's
batched API, llguidance fill_next_token_bitmask_par on an LLExecutor(THREADS), xgrammar
BatchGrammarMatcher(THREADS).batch_fill_next_token_bitmask), or with MODE=serial the same rows
filled one by one from a Python loop; the two modes follow identical trajectories. Each step's fill
is timed by wall clock and by the process's CPU time (all threads: the sum of the work done).
Then sample each row (biased stand-in as in
bench_drive.py, not timed) and accept (timed). A finished row gets a fresh matcher on the next
schema, so the batch stays full and mixes early, middle and late states.
"""

import json
import os
import sys
import time

import bench_drive as bd
import engines
import numpy as np
import tokinfo
import torch
from gen_schemas import random_schemas, tool_schemas


def main():
    eng_name, tok_name, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mode = sys.argv[4]
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 300
    B = int(sys.argv[6]) if len(sys.argv) > 6 else 64
    cold = len(sys.argv) > 7 and sys.argv[7] == "cold"
    eng = engines.ENGINES[eng_name](tok_name, threads=threads)
    eos = set(tokinfo.TOKENIZERS[tok_name][2])
    w = bd.weights(bd.token_bytes(eng), eos, True)
    schemas = random_schemas() + [s for _, _, s in tool_schemas()]
    # SKIP=120,7 drops schemas by index (to see a batch without one pathological schema)
    skip = {int(x) for x in os.environ.get("SKIP", "").split(",") if x}
    schemas = [s for k, s in enumerate(schemas) if k not in skip]
    compiled = [eng.compile("json", s) for s in schemas]

    def fresh(k):
        c = eng.compile("json", schemas[k % len(schemas)]) if cold else compiled[k % len(compiled)]
        return c.matcher()

    nxt = 0
    rows = []
    for _ in range(B):
        rows.append(fresh(nxt))
        nxt += 1
    V = eng.vocab_size
    bm = torch.full((B, (V + 31) // 32), -1, dtype=torch.int32)
    rng = np.random.default_rng(0)
    fill_t, accept_t, cpu_t = [], [], []
    lens = [0] * B
    finished = 0
    for _step in range(steps):
        c0 = time.process_time_ns()
        t0 = time.perf_counter_ns()
        if mode == "batch":
            eng.fill_batch(rows, bm)
        else:
            for i, m in enumerate(rows):
                m.fill(bm, i)
        fill_t.append(time.perf_counter_ns() - t0)
        cpu_t.append(time.process_time_ns() - c0)
        toks = []
        for i in range(B):
            ids = bd.allowed_ids(bm[i], V)
            p = w[ids]
            toks.append(int(rng.choice(ids, p=p / p.sum())))
        t0 = time.perf_counter_ns()
        oks = [m.accept(t) for m, t in zip(rows, toks, strict=False)]
        accept_t.append(time.perf_counter_ns() - t0)
        assert all(oks), "a sampled allowed token was refused"
        for i, t in enumerate(toks):
            lens[i] += 1
            if t in eos or lens[i] >= 600:
                finished += 1
                rows[i] = fresh(nxt)
                nxt += 1
                lens[i] = 0

    def st(xs):
        a = np.array(xs) / 1e3
        return {
            "p50": float(np.percentile(a, 50)),
            "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)),
            "max": float(a.max()),
            "mean": float(a.mean()),
        }

    out = {
        "engine": eng_name,
        "tokenizer": tok_name,
        "batch": B,
        "threads": threads,
        "mode": mode,
        "cold": cold,
        "steps": steps,
        "sequences_finished": finished,
        "fill_us": st(fill_t),
        "fill_process_cpu_us": st(cpu_t),
        "accept_all_rows_us": st(accept_t),
        "loadavg": os.getloadavg()[0],
        "skipped": sorted(skip),
    }
    os.makedirs("results", exist_ok=True)
    with open("results/batch.jsonl", "a") as f:
        f.write(json.dumps(out) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
