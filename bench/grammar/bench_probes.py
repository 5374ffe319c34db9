"""Keyword probes: does each engine enforce, refuse, or silently ignore each JSON Schema keyword?

usage: python bench_probes.py [TOKENIZER]   -> results/probes.json and a markdown table on stdout
"""

import json
import pathlib
import sys

import engines
from probes import PROBES


def run_text(compiled, text):
    m = compiled.matcher()
    ok = m.accept_text(text)
    return bool(ok and m.is_accepting())


def classify(compiled_err, valid_ok, invalid_ok, warned):
    if compiled_err:
        return "REFUSED"
    if not valid_ok:
        return "OVER-STRICT (rejects valid)"
    if invalid_ok is None:
        return "compiles" + (" (warns)" if warned else "")
    if invalid_ok:
        return "IGNORED" + (" (warns)" if warned else " silently")
    return "enforced"


def main():
    tok = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    engs = [engines.LLG(tok), engines.XGR(tok)]
    rows = []
    for name, schema, valid, invalid in PROBES:
        row = {"probe": name}
        for e in engs:
            try:
                c = e.compile("json", schema)
                err = None
            except engines.CompileError as ex:
                c, err = None, str(ex)
            if c is None:
                v = i = None
                warn = []
            else:
                v = run_text(c, json.dumps(valid, separators=(",", ":"), ensure_ascii=False))
                i = (
                    None
                    if invalid is None
                    else run_text(c, json.dumps(invalid, separators=(",", ":"), ensure_ascii=False))
                )
                warn = c.warnings
            row[e.name] = {
                "class": classify(err, v, i, bool(warn)),
                "error": err and err[:300],
                "warnings": [w[:200] for w in warn],
            }
        rows.append(row)
    pathlib.Path("results/probes.json").write_text(json.dumps(rows, indent=1))
    print("| keyword | llguidance | xgrammar |")
    print("|---|---|---|")
    for r in rows:
        cells = []
        for n in ("llguidance", "xgrammar"):
            x = r[n]
            msg = x["class"]
            if x["error"]:
                msg += ": `" + x["error"].replace("\n", " ").replace("|", "/")[:140] + "`"
            if x["warnings"]:
                msg += ": `" + x["warnings"][0].replace("\n", " ").replace("|", "/")[:140] + "`"
            cells.append(msg)
        print(f"| {r['probe']} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
