"""Validity under random sampling + batch-1 mask fill time along real trajectories.

usage: python bench_drive.py ENGINE TOKENIZER [N_SCHEMAS]   -> results/drive_ENGINE_TOKENIZER.json

Each schema (200 random + 40 tool-call) is driven 3 times by a random-weights stand-in:
  - 2 trajectories 'biased': a token is drawn among the allowed ones with weight 1, or 400 if its
    bytes hold one of '"', '}', ']' (so strings and containers close within the token budget;
    a uniform draw closes a string with p ~ 1/200 per step), EOS weight 1000;
  - 1 trajectory 'uniform': every allowed token weight 1 (the adversarial case for token
    boundaries crossing structure).
Budget 1500 tokens (then the output is cut as max_tokens would: counted, not validated).
Each fill is timed twice: wall clock, and the calling thread's CPU time (time.thread_time_ns,
which a busy shared machine inflates far less: descheduled time is not counted).
Every finished output must be strict UTF-8, parse with json.loads, and validate with
jsonschema Draft 2020-12 + FormatChecker. Each fill_next_token_bitmask call is timed.
"""

import json
import os
import pathlib
import sys
import time

import engines
import jsonschema
import numpy as np
import torch
from gen_schemas import random_schemas, tool_schemas

BUDGET = 1500


def token_bytes(eng):
    if eng.name == "xgrammar":
        return list(eng.vocab)
    return [eng.tok.decode_bytes([i]) for i in range(eng.vocab_size)]


def weights(tb, eos, biased):
    w = np.ones(len(tb))
    if biased:
        for i, b in enumerate(tb):
            if b'"' in b or b"}" in b or b"]" in b:
                w[i] = 400.0
    for e in eos:
        w[e] = 1000.0
    return w


def allowed_ids(row, vocab):
    bits = np.unpackbits(row.numpy().view(np.uint8), bitorder="little")[:vocab]
    return np.flatnonzero(bits)


def drive(eng, compiled, w, eos, rng, fill_times, acc_times, cpu_times=None):
    m = compiled.matcher()
    bm = torch.zeros((1, (eng.vocab_size + 31) // 32), dtype=torch.int32)
    toks = []
    for _ in range(BUDGET):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        m.fill(bm)
        fill_times.append(time.perf_counter_ns() - t0)
        if cpu_times is not None:
            cpu_times.append(time.thread_time_ns() - c0)
        ids = allowed_ids(bm[0], eng.vocab_size)
        if len(ids) == 0:
            return "empty-mask", toks
        p = w[ids]
        t = int(rng.choice(ids, p=p / p.sum()))
        t0 = time.perf_counter_ns()
        ok = m.accept(t)
        acc_times.append(time.perf_counter_ns() - t0)
        if not ok:
            return "accept-refused", toks
        if t in eos:
            return "stop", toks
        toks.append(t)
    return "length", toks


def summary(values, percentiles, extremes=False):
    """p<q> for each percentile q, then the mean (and the max with `extremes`)."""
    out = {f"p{q}": float(np.percentile(values, q)) for q in percentiles}
    if extremes:
        out["max"] = float(values.max())
    out["mean"] = float(values.mean())
    return out


def biased_walk(eng, matcher, w, rng, bitmask, steps):
    """Feeds `matcher` up to `steps` tokens drawn from its masks with weights `w` (the
    stand-in for a model); stops at EOS (2), a refusal or the grammar's end."""
    for _ in range(steps):
        matcher.fill(bitmask)
        ids = allowed_ids(bitmask[0], eng.vocab_size)
        p = w[ids]
        t = int(rng.choice(ids, p=p / p.sum()))
        if t == 2 or not matcher.accept(t) or matcher.is_done():
            return


def main():
    eng_name, tok_name = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 240
    eng = engines.ENGINES[eng_name](tok_name)
    eos = set(int(e) for e in __import__("tokinfo").TOKENIZERS[tok_name][2])
    tb = token_bytes(eng)
    wb, wu = weights(tb, eos, True), weights(tb, eos, False)
    schemas = (
        [("random", s) for s in random_schemas()] + [(lbl, s) for lbl, _, s in tool_schemas()]
    )[:n]
    fill_times, acc_times, cpu_times = [], [], []
    counts = {"stop": 0, "length": 0, "empty-mask": 0, "accept-refused": 0}
    valid = invalid = 0
    bad = []
    lengths = []
    for i, (_lbl, s) in enumerate(schemas):
        c = eng.compile("json", s)
        val = jsonschema.Draft202012Validator(
            s, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        for k, w in enumerate((wb, wb, wu)):
            rng = np.random.default_rng(1000 * i + k)
            why, toks = drive(eng, c, w, eos, rng, fill_times, acc_times, cpu_times)
            counts[why] += 1
            if why != "stop":
                if why != "length":
                    bad.append(
                        {
                            "schema": i,
                            "traj": k,
                            "why": why,
                            "text": eng.decode(toks)[-200:].decode("utf-8", "replace"),
                        }
                    )
                continue
            lengths.append(len(toks))
            raw = eng.decode(toks)
            try:
                doc = json.loads(raw.decode("utf-8"))
                errs = [e.message for e in val.iter_errors(doc)]
            except Exception as e:  # noqa: BLE001
                errs = [f"{type(e).__name__}: {e}"]
            if errs:
                invalid += 1
                bad.append(
                    {
                        "schema": i,
                        "traj": k,
                        "errors": errs[:3],
                        "text": raw[:400].decode("utf-8", "replace"),
                    }
                )
            else:
                valid += 1
        if i % 40 == 0:
            print(i, counts, "valid", valid, "invalid", invalid, flush=True)
    ft = np.array(fill_times) / 1e3
    at = np.array(acc_times) / 1e3
    ct = np.array(cpu_times) / 1e3
    out = {
        "engine": eng_name,
        "tokenizer": tok_name,
        "schemas": len(schemas),
        "outcomes": counts,
        "valid": valid,
        "invalid": invalid,
        "valid_fraction": valid / max(1, valid + invalid),
        "tokens_per_output_p50": float(np.median(lengths)) if lengths else None,
        "fill_us": {"n": len(ft), **summary(ft, (50, 90, 99), extremes=True)},
        "fill_thread_cpu_us": summary(ct, (50, 90, 99), extremes=True),
        "accept_us": summary(at, (50, 99)),
        "bad": bad,
    }
    os.makedirs("results", exist_ok=True)
    pathlib.Path(f"results/drive_{eng_name}_{tok_name}.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "bad"}))
    for b in bad[:10]:
        print("BAD", json.dumps(b)[:600])


if __name__ == "__main__":
    main()
