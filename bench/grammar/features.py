"""Matcher features, checked the same way on both engines (SmolLM2 vocab unless noted).

usage: python features.py [TOKENIZER]  -> results/features_TOKENIZER.json and a summary on stdout

regex / choice / lark / GBNF grammars; structural tags for tool calls in 'auto' mode (free text
until '<tool_call>', then the call's JSON, then free text again) and 'required'; rollback
(masks after rollback equal the masks first seen; rollback of a stop token; long rollbacks);
termination (stop-only mask, accepting-but-extendable states); fork for n>1; the cut a
max_tokens budget leaves mid-object; random drives of every grammar checked by a validator.
"""

import json
import pathlib
import re
import sys
import time

import bench_drive as bd
import engines
import jsonschema
import numpy as np
import tokinfo
import torch

TOOL_PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
CALL = {
    "type": "object",
    "properties": {"name": {"const": "get_weather"}, "arguments": TOOL_PARAMS},
    "required": ["name", "arguments"],
    "additionalProperties": False,
}
LARK = r"""
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,3}/
"""
GBNF = r"""
root ::= "SELECT " column " FROM " table " WHERE " cond
column ::= "col_1" | "col_2" | "*"
table ::= "t1" | "t2"
cond ::= column " = " [0-9]+
"""
SQL_RE = re.compile(r"SELECT (col_1|col_2|\*) FROM (t1|t2) WHERE (col_1|col_2|\*) = [0-9]+")
ARITH_RE = None  # checked by eval instead


def bitmask(eng, rows=1):
    return torch.full((rows, (eng.vocab_size + 31) // 32), -1, dtype=torch.int32)


def drive(eng, m, w, eos, rng, budget=400, stop_when_done=False):
    bm = bitmask(eng)
    toks = []
    for _ in range(budget):
        m.fill(bm)
        ids = bd.allowed_ids(bm[0], eng.vocab_size)
        p = w[ids]
        t = int(rng.choice(ids, p=p / p.sum()))
        if not m.accept(t):
            return "refused", toks
        if t in eos:
            return "stop", toks
        toks.append(t)
    return "length", toks


def compile_grammar(eng, kind, spec):
    """Our integration layer's view: one (kind, spec) per structured_outputs / response_format /
    tools option, mapped to each engine's API."""
    if eng.name == "llguidance":
        import llguidance as llg

        if kind == "gbnf":
            return eng.compile("raw", llg.grammar_from("grammar", spec))
        if kind == "tool_auto":
            g = llg.StructTag.to_grammar(
                [
                    llg.StructTag(
                        trigger="<tool_call>",
                        begin="<tool_call>\n",
                        grammar=CALL,
                        end="\n</tool_call>",
                    )
                ],
                assume_special=False,
            )
            return eng.compile(
                "raw", llg.LLMatcher.grammar_from_lark(g) if not g.startswith("{") else g
            )
        if kind == "tool_required":
            # tool_choice=required as one lark grammar: at least one call, nothing but calls
            lark = (
                'start: call+\ncall: "<tool_call>\\n" %json '
                + json.dumps(CALL)
                + ' "\\n</tool_call>"\n'
            )
            return eng.compile("lark", lark)
        return eng.compile(kind, spec)
    # xgrammar
    from xgrammar.structural_tag import (
        JSONSchemaFormat,
        StructuralTag,
        TagFormat,
        TriggeredTagsFormat,
    )

    if kind == "gbnf":
        return eng.compile("ebnf", spec)
    if kind in ("tool_auto", "tool_required"):
        tag = TagFormat(
            begin="<tool_call>\n", content=JSONSchemaFormat(json_schema=CALL), end="\n</tool_call>"
        )
        st = StructuralTag(
            format=TriggeredTagsFormat(
                triggers=["<tool_call>"], tags=[tag], at_least_one=kind == "tool_required"
            )
        )
        return eng.compile("structural_tag", st)
    return eng.compile(kind, spec)


def check_tool_text(text):
    calls = re.findall(r"<tool_call>\n(.*?)\n</tool_call>", text, re.S)
    opened = text.count("<tool_call>")
    for c in calls:
        jsonschema.validate(json.loads(c), CALL)
    return len(calls), opened


def main():
    tok = sys.argv[1] if len(sys.argv) > 1 else "smollm2"
    eos = set(tokinfo.TOKENIZERS[tok][2])
    results = {}
    for E in (engines.LLG, engines.XGR):
        eng = E(tok)
        tb = bd.token_bytes(eng)
        wb = bd.weights(tb, eos, True)
        r = {}
        # --- grammars: compile, drive 30 random outputs, validate each
        checks = {
            "regex": (
                "regex",
                r"[a-z]{1,8}@[a-z]{1,8}\.(com|org)",
                lambda s: re.fullmatch(r"[a-z]{1,8}@[a-z]{1,8}\.(com|org)", s),
            ),
            "choice": (
                "choice",
                ["yes", "no", "maybe so", "Ünïcode ✓"],
                lambda s: s in ["yes", "no", "maybe so", "Ünïcode ✓"],
            ),
            "lark": ("lark", LARK, lambda s: re.fullmatch(r"[0-9+\-*/()]+", s) and _evaluates(s)),
            "gbnf": ("gbnf", GBNF, lambda s: SQL_RE.fullmatch(s)),
        }
        for name, (kind, spec, ok) in checks.items():
            try:
                t0 = time.perf_counter()
                c = compile_grammar(eng, kind, spec)
                ms = (time.perf_counter() - t0) * 1e3
            except Exception as e:  # noqa: BLE001
                r[name] = {"compile": f"FAILED {type(e).__name__}: {str(e)[:300]}"}
                continue
            good = bad = cut = 0
            examples = []
            for k in range(30):
                why, toks = drive(eng, c.matcher(), wb, eos, np.random.default_rng(k))
                s = eng.decode(toks).decode("utf-8", "replace")
                if why != "stop":
                    cut += 1
                    continue
                if ok(s):
                    good += 1
                else:
                    bad += 1
                if len(examples) < 3:
                    examples.append(s[:80])
            r[name] = {
                "compile_ms": round(ms, 2),
                "valid": good,
                "invalid": bad,
                "cut_or_refused": cut,
                "examples": examples,
            }
        # --- tool calls, auto: free text, trigger, constrained call, free text
        for kind in ("tool_auto", "tool_required"):
            try:
                c = compile_grammar(eng, kind, None)
            except Exception as e:  # noqa: BLE001
                r[kind] = {"compile": f"FAILED {type(e).__name__}: {str(e)[:300]}"}
                continue
            pre = "Let me check." if kind == "tool_auto" else ""
            good_txt = (
                pre
                + '<tool_call>\n{"name":"get_weather",'
                + '"arguments":{"city":"Paris","unit":"c"}}\n</tool_call>'
            )
            bad_txt = pre + '<tool_call>\n{"name":"get_weather","arguments":{"town":"Paris"}}'
            m = c.matcher()
            acc_good = m.accept_text(good_txt)
            m2 = c.matcher()
            acc_bad = m2.accept_text(bad_txt)
            m3 = c.matcher()
            free = m3.accept_text("Just chatting, no tools needed.")
            free_can_stop = m3.is_accepting()
            # random continuation after the trigger: the call must parse and validate
            valid_calls = 0
            refused = 0
            for k in range(20):
                m4 = c.matcher()
                assert m4.accept_text(pre + "<tool_call>")
                why, toks = drive(eng, m4, wb, eos, np.random.default_rng(100 + k), budget=300)
                if why == "refused":
                    refused += 1
                text = pre + "<tool_call>" + eng.decode(toks).decode("utf-8", "replace")
                try:
                    n, opened = check_tool_text(text)
                    valid_calls += n
                except Exception:  # noqa: BLE001
                    refused += 1
            r[kind] = {
                "accepts_valid_call_after_text": acc_good,
                "accepts_invalid_call": acc_bad,
                "free_text_ok": free,
                "free_text_can_stop": free_can_stop,
                "random_calls_valid": valid_calls,
                "random_failures": refused,
            }
        # --- rollback
        c = eng.compile("json", CALL)
        m = c.matcher()
        rng = np.random.default_rng(5)
        masks, toks = [], []
        bm = bitmask(eng)
        for _ in range(200):
            m.fill(bm)
            masks.append(bm.clone())
            ids = bd.allowed_ids(bm[0], eng.vocab_size)
            p = wb[ids]
            t = int(rng.choice(ids, p=p / p.sum()))
            if t in eos or m.is_done():
                break
            assert m.accept(t)
            toks.append(t)
        n = len(toks)
        same = []
        for back in (1, 3, n // 2, n):
            mm = c.matcher()
            for t in toks:
                mm.accept(t)
            try:
                ok = mm.rollback(back)
            except Exception as e:  # noqa: BLE001
                ok = f"{type(e).__name__}: {e}"
            mm.fill(bm)
            same.append(
                {"rollback": back, "ok": ok, "mask_equal": bool(torch.equal(bm, masks[n - back]))}
            )
        # rollback of an accepted stop token
        mm = c.matcher()
        done_text = json.dumps(
            {"name": "get_weather", "arguments": {"city": "P", "unit": "c"}}, separators=(",", ":")
        )
        mm.accept_text(done_text)
        eos_id = sorted(eos)[0]
        acc_eos = mm.accept(eos_id)
        done = mm.is_done()
        try:
            rb = mm.rollback(1)
            mm.fill(bm)
            after = {
                "rollback_ok": rb if rb is not None else True,
                "not_done_after": not mm.is_done(),
                "eos_allowed_again": bool((bm[0, eos_id // 32].item() >> (eos_id % 32)) & 1),
            }
        except Exception as e:  # noqa: BLE001
            after = {"rollback_error": f"{type(e).__name__}: {e}"}
        # termination: stop-only mask at the end; accepting-but-extendable at root integer
        mm2 = c.matcher()
        mm2.accept_text(done_text)
        mm2.fill(bm)
        end_ids = bd.allowed_ids(bm[0], eng.vocab_size).tolist()
        ci = eng.compile("json", {"type": "integer"}).matcher()
        ci.accept_text("12")
        ci.fill(bm)
        ext = bd.allowed_ids(bm[0], eng.vocab_size)
        r["rollback"] = {
            "tokens": n,
            "checks": same,
            "stop_token": {"accepted": acc_eos, "done": done, **after},
        }
        r["termination"] = {
            "mask_at_end_of_object": end_ids,
            "integer_12_accepting": ci.is_accepting(),
            "integer_12_allows_eos": any(e in set(ext.tolist()) for e in eos),
            "integer_12_allows_more_digits": len(ext) > 1,
        }
        # fork for n > 1: cost of a copy of a matcher mid-way
        m = c.matcher()
        m.accept_text('{"name":"get_weather","arguments":{"city":"Pa')
        t0 = time.perf_counter()
        for _ in range(200):
            m.m.deep_copy() if eng.name == "llguidance" else m.m.fork()
        r["fork_us"] = (time.perf_counter() - t0) / 200 * 1e6
        # max_tokens mid-object: the matcher has no budget; the text is cut and not accepting
        m = c.matcher()
        m.accept_text('{"name":"get_weather","arguments":{"ci')
        r["max_tokens_mid_object"] = {"accepting": m.is_accepting(), "done": m.is_done()}
        results[eng.name] = r
        print(eng.name, json.dumps(r, default=str)[:3000], flush=True)
    pathlib.Path(f"results/features_{tok}.json").write_text(
        json.dumps(results, indent=1, default=str)
    )


def _evaluates(s):
    try:
        # the grammar allows leading zeros ('07'), which Python literals do not
        eval(re.sub(r"\b0+(\d)", r"\1", s), {"__builtins__": {}})  # noqa: S307 - digits/operators only
        return True
    except ZeroDivisionError:
        return True
    except Exception:  # noqa: BLE001
        return False


if __name__ == "__main__":
    main()
