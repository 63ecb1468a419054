"""Shared checks for the JSON-schema frontend tests: well-formed grammar text, acceptance vs jsonschema."""
from __future__ import annotations

import json

import interegular
import jsonschema
from lark.common import ParserConf
from lark.load_grammar import load_grammar
from lark.parsers.lalr_analysis import LALR_Analyzer

from lightllm_struct.grammar.json_schema import json_schema_to_lark
from tests.grammar.json_schema.accept import accepts, lalr_parser


def assert_well_formed(text: str) -> None:
    """LALR(1) without any conflict (strict), every terminal parsable by interegular."""
    grammar, _ = load_grammar(text, "<test>", (), False)
    terminals, rules, _ignore = grammar.compile(["start"], set())
    LALR_Analyzer(ParserConf(rules, None, ["start"]), strict=True).compute_lalr()
    for term in terminals:
        interegular.parse_pattern(term.pattern.to_regexp())


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class SchemaGrammar:
    """A schema compiled to grammar text, with acceptance and an independent validator side by side."""

    def __init__(self, schema, *, whitespace: str = "compact", **options) -> None:
        self.schema = schema
        self.text = json_schema_to_lark(schema, whitespace=whitespace, **options)
        assert_well_formed(self.text)
        self.parser = lalr_parser(self.text)
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        self.validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def accepts(self, text: str) -> bool:
        return accepts(self.parser, text)

    def check(self, value, *, complete: bool = True) -> bool:
        """Accepted -> valid (always); valid -> accepted (when ``complete``). Returns acceptance."""
        text = compact(value)
        got, valid = self.accepts(text), self.validator.is_valid(value)
        assert not got or valid, f"accepted an invalid instance: {text}"
        if complete:
            assert got == valid, f"{'rejected a valid' if valid else 'accepted an invalid'} instance: {text}"
        return got
