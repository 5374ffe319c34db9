"""Schema coverage and compile time.

usage: python bench_compile.py ENGINE TOKENIZER [ROUNDS]   -> results/compile_ENGINE_TOKENIZER.json

compile = everything between the schema text and a matcher able to give its first mask:
  llguidance: grammar_from_json_schema + LLMatcher(tok, grammar) (+ first mask, reported apart,
              since llguidance builds lexer states lazily)
  xgrammar:   GrammarCompiler.compile_json_schema with the compiler cache off (+ GrammarMatcher
              + first mask, reported apart)
cached = what a hit in our schema-hash cache costs: llguidance LLMatcher.deep_copy of a pristine
matcher; xgrammar compile_json_schema with its cache on (second call) + GrammarMatcher.
"""

import json
import os
import pathlib
import sys
import time

import engines
import numpy as np
import torch
from gen_schemas import random_schemas, tool_schemas


def pct(xs, q):
    return float(np.percentile(np.array(xs), q)) if xs else None


def main():
    eng_name, tok_name = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    schemas = [("random", s) for s in random_schemas()] + [(lbl, s) for lbl, _, s in tool_schemas()]
    kw = {"cache": False} if eng_name == "xgrammar" else {}
    eng = engines.ENGINES[eng_name](tok_name, **kw)
    bm = torch.zeros((1, (eng.vocab_size + 31) // 32), dtype=torch.int32)
    failures = {}
    rounds_out = []
    for r in range(rounds):
        comp, first, total = [], [], []
        for i, (lbl, s) in enumerate(schemas):
            t0 = time.perf_counter()
            try:
                c = eng.compile("json", s)
            except engines.CompileError as e:
                failures[i] = {"label": lbl, "error": str(e)[:400]}
                continue
            t1 = time.perf_counter()
            m = c.matcher()
            m.fill(bm)
            t2 = time.perf_counter()
            comp.append((t1 - t0) * 1e3)
            first.append((t2 - t1) * 1e3)
            total.append((t2 - t0) * 1e3)
        rounds_out.append(
            {
                "compile_ms_p50": pct(comp, 50),
                "compile_ms_p99": pct(comp, 99),
                "compile_ms_max": max(comp),
                "first_mask_ms_p50": pct(first, 50),
                "first_mask_ms_p99": pct(first, 99),
                "total_ms_p50": pct(total, 50),
                "total_ms_p99": pct(total, 99),
                "total_ms_max": max(total),
                "total_ms_mean": float(np.mean(total)),
            }
        )
        print(eng_name, tok_name, "round", r, json.dumps(rounds_out[-1]), flush=True)
    # cache hit cost
    hit = []
    if eng_name == "xgrammar":
        eng2 = engines.XGR(tok_name, cache=True)
        for _lbl, s in schemas[:60]:
            try:
                eng2.compile("json", s)
            except engines.CompileError:
                continue
            t0 = time.perf_counter()
            eng2.compile("json", s).matcher()
            hit.append((time.perf_counter() - t0) * 1e3)
        cache_bytes = eng2.compiler.get_cache_size_bytes()
    else:
        protos = []
        for _lbl, s in schemas[:60]:
            try:
                protos.append(eng.compile("json", s))
            except engines.CompileError:
                continue
        for c in protos:
            t0 = time.perf_counter()
            c.matcher()
            hit.append((time.perf_counter() - t0) * 1e3)
        cache_bytes = None
    out = {
        "engine": eng_name,
        "tokenizer": tok_name,
        "n_schemas": len(schemas),
        "n_failed": len(failures),
        "failures": failures,
        "rounds": rounds_out,
        "cache_hit_ms_p50": pct(hit, 50),
        "cache_hit_ms_p99": pct(hit, 99),
        "xgr_cache_bytes_60_schemas": cache_bytes,
    }
    os.makedirs("results", exist_ok=True)
    pathlib.Path(f"results/compile_{eng_name}_{tok_name}.json").write_text(
        json.dumps(out, indent=1)
    )
    print(
        "failed",
        len(failures),
        "cache hit p50/p99 ms",
        out["cache_hit_ms_p50"],
        out["cache_hit_ms_p99"],
        "xgr cache bytes",
        cache_bytes,
    )
    for i, f in list(failures.items())[:8]:
        print(" fail", i, f)


if __name__ == "__main__":
    main()
