"""Thin adapters giving llguidance and xgrammar one interface for the measurements.

compile(kind, spec) -> Compiled (raises CompileError with the engine's message)
Compiled.matcher() -> Matcher with fill(bitmask, row), accept(token) -> bool, rollback(n),
is_done() (stop token accepted / grammar can't extend), is_accepting(), text bytes of the tokens.
Both are configured for compact JSON (no free whitespace, ',' and ':' separators), which is what
a served structured output should be and what makes the two grammars identical.
"""

import json
import pathlib

import tokinfo


class CompileError(Exception):
    pass


class LLG:
    name = "llguidance"

    def __init__(self, tok_name, compact=True, threads=None):
        import llguidance
        import llguidance.torch as lnp

        self.llg = llguidance
        self.lnp = lnp
        self.tok = tokinfo.llg_tokenizer(tok_name)
        self.vocab_size = self.tok.vocab_size
        self.eos = tokinfo.TOKENIZERS[tok_name][2]
        self.opts = {"whitespace_flexible": not compact}
        if compact:
            self.opts.update({"item_separator": ",", "key_separator": ":"})
        self.executor = llguidance.LLExecutor(num_threads=threads) if threads else None

    def grammar(self, kind, spec):
        M = self.llg.LLMatcher
        if kind == "json":
            return M.grammar_from_json_schema(
                spec if isinstance(spec, str) else json.dumps(spec), defaults=self.opts
            )
        if kind == "regex":
            return M.grammar_from_regex(spec)
        if kind == "lark":
            return M.grammar_from_lark(spec)
        if kind == "choice":
            return self.llg.grammar_from("choice", json.dumps(spec))
        if kind == "raw":
            return spec
        raise ValueError(kind)

    def compile(self, kind, spec):
        g = self.grammar(kind, spec)
        m = self.llg.LLMatcher(self.tok, g, log_level=0)
        if m.is_error():
            raise CompileError(m.get_error())
        return LLGCompiled(self, m)

    def fill_batch(self, matchers, bitmask):
        self.lnp.fill_next_token_bitmask_par(
            self.executor, [(m.m, i) for i, m in enumerate(matchers)], bitmask
        )

    def decode(self, toks):
        return self.tok.decode_bytes(toks)


class LLGCompiled:
    def __init__(self, eng, m):
        self.eng = eng
        self.proto = m
        self.warnings = m.get_grammar_warnings()

    def matcher(self):
        return LLGMatcher(self.eng, self.proto.deep_copy())


class LLGMatcher:
    def __init__(self, eng, m):
        self.eng = eng
        self.m = m

    def fill(self, bitmask, row=0):
        self.eng.lnp.fill_next_token_bitmask(self.m, bitmask, row)

    def accept(self, t):
        return self.m.consume_token(t)

    def accept_text(self, text):
        toks = self.eng.tok.tokenize_str(text)
        return self.m.consume_tokens(toks) and not self.m.is_error()

    def rollback(self, n):
        return self.m.rollback(n)

    def is_done(self):
        return self.m.is_stopped()

    def is_accepting(self):
        return self.m.is_accepting()

    def error(self):
        return self.m.get_error()


class XGR:
    name = "xgrammar"

    def __init__(self, tok_name, compact=True, threads=None, cache=True, blank_specials=True):
        import xgrammar as xgr

        self.xgr = xgr
        self.info = tokinfo.xgr_tokenizer_info(tok_name)
        if blank_specials:
            # xgrammar 0.2.9 does not mark tokenizer.json's special added tokens as special: their
            # literal text ('<|im_start|>') would be allowed inside JSON strings. An empty decoded
            # string makes TokenizerInfo treat them as special (never allowed); stop ids are kept.
            self.info = _blank_special(tok_name, self.info, xgr)
        self.vocab_size = self.info.vocab_size
        self.compiler = xgr.GrammarCompiler(
            self.info, max_threads=threads or 1, cache_enabled=cache
        )
        self.compact = compact
        self.batch = xgr.BatchGrammarMatcher(max_threads=threads) if threads else None
        self.vocab = self.info.decoded_vocab

    def compile(self, kind, spec):
        c = self.compiler
        try:
            if kind == "json":
                s = spec if isinstance(spec, str) else json.dumps(spec)
                if self.compact:
                    cg = c.compile_json_schema(s, any_whitespace=False, separators=(",", ":"))
                else:
                    cg = c.compile_json_schema(s)
            elif kind == "regex":
                cg = c.compile_regex(spec)
            elif kind == "lark":
                cg = c.compile_lark(spec)
            elif kind == "ebnf":
                cg = c.compile_grammar(spec)
            elif kind == "choice":
                cg = c.compile_regex("|".join(_re_escape(x) for x in spec))
            elif kind == "structural_tag":
                cg = c.compile_structural_tag(spec)
            else:
                raise ValueError(kind)
        except (RuntimeError, ValueError, self.xgr.InvalidJSONError) as e:
            raise CompileError(f"{type(e).__name__}: {e}") from e
        return XGRCompiled(self, cg)

    def fill_batch(self, matchers, bitmask):
        self.batch.batch_fill_next_token_bitmask([m.m for m in matchers], bitmask)

    def decode(self, toks):
        return b"".join(self.vocab[t] for t in toks)


def _re_escape(s):
    import re

    return re.escape(s)


def _blank_special(tok_name, info, xgr):
    path, n_vocab, eos = tokinfo.TOKENIZERS[tok_name]
    added = json.loads(pathlib.Path(path).read_text())["added_tokens"]
    specials = {a["id"] for a in added if a["special"]}
    enc = [b"" if i in specials else v for i, v in enumerate(info.decoded_vocab)]
    # decoded bytes are already raw: RAW vocab type keeps them as they are
    return xgr.TokenizerInfo(
        enc, xgr.VocabType.RAW, vocab_size=n_vocab, stop_token_ids=eos, add_prefix_space=False
    )


class XGRCompiled:
    def __init__(self, eng, cg):
        self.eng = eng
        self.cg = cg
        self.warnings = []

    def matcher(self):
        return XGRMatcher(self.eng, self.eng.xgr.GrammarMatcher(self.cg))


class XGRMatcher:
    def __init__(self, eng, m):
        self.eng = eng
        self.m = m

    def fill(self, bitmask, row=0):
        self.m.fill_next_token_bitmask(bitmask, row)

    def accept(self, t):
        return self.m.accept_token(t)

    def accept_text(self, text):
        return self.m.accept_string(text)

    def rollback(self, n):
        self.m.rollback(n)
        return True

    def is_done(self):
        return self.m.is_terminated()

    def is_accepting(self):
        return self.m.is_completed()

    def error(self):
        return ""


ENGINES = {"llguidance": LLG, "xgrammar": XGR}
