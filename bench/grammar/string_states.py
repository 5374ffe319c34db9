"""Per-token fill time inside one string value, by kind of string constraint (batch 1).

usage: python string_states.py TOKENIZER  -> results/string_states_TOKENIZER.json
Each case: accept '{"s":"' then 30 steps of a token drawn among allowed ones that do not close
the string (when any), timing each fill; median and max over 3 seeds.
"""

import json
import pathlib
import sys
import time

import bench_drive as bd
import engines
import numpy as np
import torch

CASES = {
    "plain string": {"type": "string"},
    "maxLength 10": {"type": "string", "maxLength": 10},
    "maxLength 200": {"type": "string", "maxLength": 200},
    "pattern ^[a-z ]{1,80}$": {"type": "string", "pattern": "^[a-z ]{1,80}$"},
    "format email": {"type": "string", "format": "email"},
    "format uri": {"type": "string", "format": "uri"},
    "format date-time": {"type": "string", "format": "date-time"},
    "format uuid": {"type": "string", "format": "uuid"},
    "enum of 50": {"enum": [f"option number {i}" for i in range(50)]},
}
tok = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
out = {}
for E in (engines.LLG, engines.XGR):
    eng = E(tok)
    tb = bd.token_bytes(eng)
    closes = np.array([b'"' in b for b in tb])
    bm = torch.full((1, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
    for name, sub in CASES.items():
        c = eng.compile(
            "json",
            {
                "type": "object",
                "properties": {"s": sub},
                "required": ["s"],
                "additionalProperties": False,
            },
        )
        ts = []
        for seed in range(3):
            m = c.matcher()
            assert m.accept_text('{"s":' if "enum" in name else '{"s":"')
            rng = np.random.default_rng(seed)
            for _ in range(30):
                t0 = time.perf_counter_ns()
                m.fill(bm)
                ts.append((time.perf_counter_ns() - t0) / 1e3)
                ids = bd.allowed_ids(bm[0], eng.vocab_size)
                keep = ids[~closes[ids]]
                ids = keep if len(keep) else ids
                t = int(rng.choice(ids))
                if t == 2 or not m.accept(t) or m.is_done():
                    break
        out.setdefault(name, {})[eng.name] = {
            "us_p50": float(np.median(ts)),
            "us_max": float(np.max(ts)),
            "n": len(ts),
        }
        print(
            f"{eng.name:10s} {name:26s} p50 {np.median(ts):9.1f} us  max {np.max(ts):9.1f} us",
            flush=True,
        )
pathlib.Path(f"results/string_states_{tok}.json").write_text(json.dumps(out, indent=1))
