"""The ready grammars in grammars/: LALR(1)-buildable, valid examples accepted, invalid ones rejected, each
checked by an independent validator (json.loads, sqlite3, Python's own parser) and through the real engine."""
from __future__ import annotations

import ast
import json
import sqlite3
from functools import lru_cache
from pathlib import Path

import pytest

from tests.grammar.json_schema.accept import accepts, lalr_parser
from tests.grammar.json_schema.helpers import assert_well_formed

GRAMMARS = Path(__file__).resolve().parents[3] / "grammars"


def _load(name: str) -> str:
    return (GRAMMARS / name).read_text()


@lru_cache(maxsize=None)
def _byte_engine():
    """The core engine over a byte vocabulary (token i = byte i, 256 = EOS): acceptance of exact bytes."""
    from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo

    return GrammarCompiler(TokenizerInfo.from_vocab([bytes([i]) for i in range(256)] + [b""], eos_token_ids=[256]))


def _engine_accepts(grammar, text: str) -> bool:
    from lightllm_struct.grammar import Matcher

    matcher = Matcher(grammar)
    return all(matcher.accept_token(b) for b in text.encode()) and matcher.accept_token(256)


def _check(name: str, good: list[str], bad: list[str], validator) -> None:
    text = _load(name)
    assert_well_formed(text)
    parser = lalr_parser(text)
    engine = _byte_engine().compile_lark(text)
    for sample in good:
        assert validator(sample), f"test example is not valid: {sample!r}"
        assert accepts(parser, sample), sample
        assert _engine_accepts(engine, sample), sample
    for sample in bad:
        assert not accepts(parser, sample), sample
        assert not _engine_accepts(engine, sample), sample


def _json_ok(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def test_json_grammar():
    value = {"a": [1, -2.5e3, True, None, {"b": "\u00e9\n\"\\"}], "c": {}, "d": []}
    good = [json.dumps(value), json.dumps(value, indent=2), json.dumps(value, separators=(",", ":")), "0",
            '"x"', "[]", '{"a":1,"a":2}', json.dumps("😀", ensure_ascii=False)]
    bad = ["{'a': 1}", "[1,]", "01", '{"a" 1}', "tru", '"\\x"', "[1" + " " * 60 + "]", "", "{\n\n\n}"]
    _check("json.lark", good, bad, _json_ok)


def _sqlite_ok(query: str) -> bool:
    db = sqlite3.connect(":memory:")
    db.executescript("CREATE TABLE users (id, name, age, team_id); CREATE TABLE teams (id, name);")
    try:
        db.execute(query)
        return True
    except sqlite3.Error:
        return False


def test_sql_grammar():
    good = [
        "SELECT * FROM users",
        "SELECT DISTINCT name, age AS years FROM users WHERE age >= 18 AND name LIKE 'A%' ORDER BY age DESC LIMIT 10",
        "SELECT u.name, COUNT(*) AS n FROM users AS u JOIN teams AS t ON u.team_id = t.id GROUP BY u.name",
        "SELECT name FROM users WHERE NOT (age < 3 OR age > 90) AND id IN (1, 2, 3)",
        "SELECT users.id FROM users LEFT JOIN teams ON users.team_id = teams.id WHERE teams.name IS NULL",
        "SELECT MAX(age) FROM users WHERE age BETWEEN 1 AND 9 AND name IS NOT NULL",
        "SELECT name FROM users WHERE name = 'it''s'",
    ]
    bad = ["SELECT FROM users", "SELECT * users", "select * from users", "SELECT *  FROM users",
           "SELECT * FROM users WHERE", "SELECT * FROM users LIMIT -1", "DELETE FROM users", "SELECT a,b FROM t"]
    _check("sql.lark", good, bad, _sqlite_ok)


def _python_ok(expr: str) -> bool:
    try:
        ast.parse(expr.replace("^", "**"), mode="eval")
        return True
    except SyntaxError:
        return False


def test_arithmetic_grammar():
    good = ["1", "1+2*3", "(1 + 2) * 3.5", "-2^3^2", "2 ^ -1", "--4 / (2 - 1)", "0.25*(3+(4-1))"]
    bad = ["1+", "(1", "1 2", "*2", "1 +  2", "01", "1..2", ""]
    _check("arithmetic.lark", good, bad, _python_ok)


def _tool_call_ok(text: str) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    calls = value if isinstance(value, list) else [value]
    return all(isinstance(c, dict) and list(c) == ["name", "arguments"] and isinstance(c["arguments"], dict)
               for c in calls)


def test_tool_call_grammar():
    good = ['{"name":"get_weather","arguments":{"city":"Paris","days":3}}',
            '{"name":"noop","arguments":{}}',
            '[{"name":"a.b","arguments":{"x":[1,{"y":null}]}},{"name":"c","arguments":{}}]']
    bad = ['{"name":"get_weather"}', '{"arguments":{},"name":"x"}', '{"name":"x","arguments":[]}',
           '{"name":"1x","arguments":{}}', '{"name": "x", "arguments": {}}', "[]"]
    _check("tool_call.lark", good, bad, _tool_call_ok)


@pytest.mark.parametrize("name", ["json.lark", "sql.lark", "arithmetic.lark", "tool_call.lark"])
def test_grammar_files_have_a_header_comment(name):
    assert _load(name).startswith("//")
