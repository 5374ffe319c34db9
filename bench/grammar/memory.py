"""Memory of compiled grammars: RSS growth for 240 compiled schemas (SmolLM2), before and after
driving each once (llguidance grows lexer states lazily); xgrammar's own memory_size_bytes.

usage: python memory.py ENGINE
"""

import gc
import json
import pathlib
import sys

import bench_drive as bd
import engines
import numpy as np
import torch
from gen_schemas import random_schemas, tool_schemas


def rss_mb():
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024


eng = engines.ENGINES[sys.argv[1]](
    "smollm2", **({"cache": False} if sys.argv[1] == "xgrammar" else {})
)
schemas = random_schemas() + [s for _, _, s in tool_schemas()]
gc.collect()
r0 = rss_mb()
comp = [eng.compile("json", s) for s in schemas]
r1 = rss_mb()
w = bd.weights(bd.token_bytes(eng), {2}, True)
bm = torch.full((1, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
for k, c in enumerate(comp):
    bd.biased_walk(eng, c.matcher(), w, np.random.default_rng(k), bm, 300)
r2 = rss_mb()
extra = {}
if sys.argv[1] == "xgrammar":
    sizes = [c.cg.memory_size_bytes for c in comp]
    extra = {"memory_size_bytes_p50": float(np.median(sizes)), "memory_size_bytes_max": max(sizes)}
print(
    json.dumps(
        {
            "engine": sys.argv[1],
            "schemas": len(comp),
            "rss_compile_mb": round(r1 - r0, 1),
            "per_schema_kb": round((r1 - r0) * 1024 / len(comp), 1),
            "rss_after_drive_mb": round(r2 - r0, 1),
            **extra,
        }
    )
)
