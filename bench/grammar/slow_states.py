"""Which matcher states make a single-row fill slow? Drives 64 rows (as bench_batch.py, serial),
times each row's fill by the calling thread's CPU time (time.thread_time_ns: time spent
descheduled on this shared machine is not counted), and prints the slowest with the schema
fragment and the text so far.

usage: python slow_states.py ENGINE TOKENIZER [STEPS]
"""

import sys
import time

import bench_drive as bd
import engines
import numpy as np
import tokinfo
import torch
from gen_schemas import random_schemas, tool_schemas

eng_name, tok = sys.argv[1], sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 150
eng = engines.ENGINES[eng_name](tok)
eos = set(tokinfo.TOKENIZERS[tok][2])
w = bd.weights(bd.token_bytes(eng), eos, True)
schemas = random_schemas() + [s for _, _, s in tool_schemas()]
comp = [eng.compile("json", s) for s in schemas]
B = 64
rows = [(k, comp[k].matcher(), []) for k in range(B)]
nxt = B
bm = torch.full((B, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
rng = np.random.default_rng(0)
rec = []
for _step in range(steps):
    for i, (k, m, toks) in enumerate(rows):
        t0 = time.thread_time_ns()
        m.fill(bm, i)
        rec.append(((time.thread_time_ns() - t0) / 1e3, k, eng.decode(toks)[-60:]))
    for i, (_k, m, toks) in enumerate(rows):
        ids = bd.allowed_ids(bm[i], eng.vocab_size)
        p = w[ids]
        t = int(rng.choice(ids, p=p / p.sum()))
        assert m.accept(t)
        if t in eos or len(toks) > 600:
            rows[i] = (nxt % len(comp), comp[nxt % len(comp)].matcher(), [])
            nxt += 1
        else:
            toks.append(t)
rec.sort(key=lambda r: -r[0])
a = np.array([r[0] for r in rec])
print(
    eng_name,
    tok,
    "row fills",
    len(a),
    "thread-CPU p50 us",
    np.percentile(a, 50),
    "p99",
    np.percentile(a, 99),
    "share of time in fills > 1ms:",
    a[a > 1000].sum() / a.sum(),
)
for us, k, txt in rec[:12]:
    print(f"{us / 1e3:8.2f} ms schema {k:3d} ...{txt!r}")
