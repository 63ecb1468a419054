"""Every kind of lexer a compiled grammar builds keeps the ``Lexer`` contract that token scans rely on."""
from __future__ import annotations

from lightllm_struct.grammar import GrammarCompiler, Matcher
from lightllm_struct.grammar.lexing.lexer import Lexer
from tests.grammar.small_vocab import small_tokenizer

# a long bounded string (a lazy lexer) beside ordinary terminals (product DFAs)
SCHEMA = {"type": "object", "properties": {"body": {"type": "string", "maxLength": 2000}, "n": {"type": "integer"}},
          "required": ["body", "n"], "additionalProperties": False}


def test_every_lexer_kind_keeps_the_contract():
    grammar = GrammarCompiler(small_tokenizer()).compile_json_schema(SCHEMA)
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(b'{"body":"abc","n":1}')
    lexers = list(grammar._lexers.values())
    assert {type(lex).__name__ for lex in lexers} >= {"UnionLexer", "FoldedLexer"}
    for lex in lexers:
        assert isinstance(lex, Lexer), type(lex).__name__
        assert len(lex.accept_list) == len(lex.rows) and lex.num_states >= 1
