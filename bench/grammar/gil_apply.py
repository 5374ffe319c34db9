"""Does the batched fill release the GIL? And what applying a [64, V] mask to torch logits
costs on CPU.

usage: python gil_apply.py [TOKENIZER]  -> results/gil_apply_TOKENIZER.json

GIL: a worker thread runs the engine's batched fill for 64 rows in a loop for 2 s while the main
thread counts a pure-Python loop. 'main_rate_ratio' = main loop rate with the worker / alone.
If the fill held the GIL the ratio would fall towards the fraction of time outside the fill;
with 2 cores and the GIL released it stays near 1 (less whatever the shared cores take).
Apply: xgrammar.apply_token_bitmask_inplace (CPU C++ kernel),
llguidance.torch.apply_token_bitmask_inplace
(torch.compile'd), and a plain torch reference, on fp32 logits [64, V].
"""

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


def count_for(seconds):
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        n += 1
    return n


def gil(eng, B=64):
    schemas = random_schemas()[:B]
    rows = [eng.compile("json", s).matcher() for s in schemas]
    # move every row a few random tokens into its document, so masks are not the trivial '{'
    rng = np.random.default_rng(0)
    one = torch.full((1, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
    for m in rows:
        for _ in range(int(rng.integers(3, 12))):
            m.fill(one)
            ids = bd.allowed_ids(one[0], eng.vocab_size)
            t = int(rng.choice(ids))
            if t in (2,) or not m.accept(t) or m.is_done():
                break
    bm = torch.full((B, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)
    alone = count_for(2.0)
    stop = threading.Event()
    fills = [0]

    def worker():
        while not stop.is_set():
            eng.fill_batch(rows, bm)
            fills[0] += 1

    th = threading.Thread(target=worker)
    th.start()
    time.sleep(0.05)
    withw = count_for(2.0)
    stop.set()
    th.join()
    t0 = time.perf_counter()
    for _ in range(50):
        eng.fill_batch(rows, bm)
    per_fill = (time.perf_counter() - t0) / 50
    return {
        "main_rate_ratio": withw / alone,
        "worker_fills_in_2s": fills[0],
        "fill_ms_alone": per_fill * 1e3,
    }


def torch_ref(logits, mask):
    bits = (mask.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    allowed = bits.reshape(mask.shape[0], -1)[:, : logits.shape[1]].bool()
    logits.masked_fill_(~allowed, float("-inf"))


def apply_bench(V, B=64, reps=30):
    import llguidance.torch as lt
    import xgrammar as xgr

    rng = np.random.default_rng(0)
    mask = torch.from_numpy(
        rng.integers(-(2**31), 2**31 - 1, size=(B, (V + 31) // 32), dtype=np.int64).astype(np.int32)
    )
    base = torch.randn(B, V)
    out = {}
    ref = base.clone()
    torch_ref(ref, mask)
    for name, fn in [
        ("xgrammar_cpu", lambda logits, m: xgr.apply_token_bitmask_inplace(logits, m)),
        ("llguidance_torch_compile", lambda logits, m: lt.apply_token_bitmask_inplace(logits, m)),
        ("torch_reference", torch_ref),
    ]:
        try:
            ts = []
            for k in range(reps + 3):
                lg = base.clone()
                t0 = time.perf_counter()
                fn(lg, mask)
                if k >= 3:
                    ts.append((time.perf_counter() - t0) * 1e6)
            out[name] = {
                "us_p50": float(np.median(ts)),
                "us_min": float(min(ts)),
                "equal_to_reference": bool(torch.equal(lg, ref)),
            }
        except Exception as e:  # noqa: BLE001
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    # rows without a grammar pay nothing: xgrammar's indices= skips them
    lg = base.clone()
    xgr.apply_token_bitmask_inplace(lg, mask, indices=[0, 5])
    out["xgrammar_indices_only_touch_listed_rows"] = bool(
        torch.equal(lg[1], base[1]) and not torch.equal(lg[0], base[0])
    )
    return out


def main():
    tok = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    res = {}
    for E in (engines.LLG, engines.XGR):
        for th in (1, 2):
            eng = E(tok, threads=th)
            r = [gil(eng) for _ in range(3)]
            res[f"{eng.name}_threads{th}"] = r
            print(eng.name, th, json.dumps(r), flush=True)
    res["apply"] = apply_bench(engines.LLG(tok).vocab_size)
    print(json.dumps(res["apply"]))
    pathlib.Path(f"results/gil_apply_{tok}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
