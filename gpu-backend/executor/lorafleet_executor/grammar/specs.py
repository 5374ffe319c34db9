"""A grammar as the engine sends it (PROTOCOL.md `compile_grammar`: a kind and its source
text) -> llguidance's grammar text.

    json_schema  a JSON Schema (response_format json_schema / json_object, vLLM's `json`)
    regex        a regular expression the whole output matches (vLLM's `regex`)
    choice       a JSON list of strings, the output is one of them (vLLM's `choice`)
    grammar      a Lark or GBNF grammar (vLLM's `grammar`), GBNF converted to Lark
    lark         llguidance's Lark as it is (the backend's tool-call grammars)

Example:
    grammar_text("choice", '["yes", "no"]')  # llguidance grammar text of `start: "yes" | "no"`
"""

import json

import llguidance
from llguidance.gbnf_to_lark import any_to_lark

from ..errors import GrammarInvalid
from ..protocol.schema import GRAMMAR_KINDS
from .limits import JSON_OPTIONS


def grammar_text(kind: str, source: str) -> str:
    if kind == "json_schema":
        schema = _json(source, "the JSON schema")
        if not isinstance(schema, dict | bool):
            raise GrammarInvalid("the JSON schema must be an object (or true/false)")
        # Our options override any "x-guidance" the schema brings: it may not relax them.
        return llguidance.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), overrides=JSON_OPTIONS
        )
    if kind == "regex":
        return llguidance.LLMatcher.grammar_from_regex(source)
    if kind == "choice":
        choices = _json(source, "choice")
        if not (
            isinstance(choices, list) and choices and all(isinstance(c, str) and c for c in choices)
        ):
            raise GrammarInvalid("choice must be a non-empty list of non-empty strings")
        return llguidance.LLMatcher.grammar_from_lark(
            "start: " + " | ".join(json.dumps(c) for c in choices)
        )
    if kind == "grammar":
        try:
            lark = any_to_lark(source)
        except Exception as error:  # the converter raises whatever its parser meets
            raise GrammarInvalid(f"the grammar is neither Lark nor GBNF: {error}") from None
        return llguidance.LLMatcher.grammar_from_lark(lark)
    if kind == "lark":
        return llguidance.LLMatcher.grammar_from_lark(source)
    raise GrammarInvalid(f"unknown grammar kind {kind!r}; one of {', '.join(GRAMMAR_KINDS)}")


def _json(source: str, what: str):
    try:
        return json.loads(source)
    except ValueError as error:
        raise GrammarInvalid(f"{what} is not JSON: {error}") from None
