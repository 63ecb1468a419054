"""Compile-time compaction of byte DFAs stays exact: counted repeats of DFA units, bounded Moore rounds,
hashed refinement (with its collision fallback)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from lightllm_struct.grammar.lexing import byte_dfa
from lightllm_struct.grammar.lexing.byte_dfa import minimize
from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from tests.grammar.grammar_helpers import assert_dfa_agrees_with_re

# units that are ambiguous, empty-capable, nested or multibyte, repeated at least 4 times
REPEATS = [
    r"(?:a|ab){4,6}b?", r"(?:(?:ab|a)c?){5,}", r"(?:x*){6}", r"(?:[^a]|a\d{2,5}){3,8}z", r"(?:é|[丕-中]{2}){0,6}",
    r"(?:x(?:ab){2,4}){0,5}y", r"(?i:ab){2,9}", r'"(?:[^"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,7}"',
]
ALPHABET = ["a", "b", "c", "x", "y", "z", "A", "B", "0", "1", "é", "中", "丕", '"', "\\", "u", "n", "f"]
JSON_CHAR = r'(?:[^\x00-\x1f"\\]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})'


def _exact_minimum(dfa) -> int:
    """States of the minimal DFA by uncapped Moore refinement."""
    old = byte_dfa._MINIMIZE_MAX_STATES
    byte_dfa._MINIMIZE_MAX_STATES = 10**9
    try:
        return minimize(dfa.table, dfa.accepting).num_states
    finally:
        byte_dfa._MINIMIZE_MAX_STATES = old


@pytest.mark.parametrize("pattern", REPEATS)
def test_counted_repeats_agree_with_re(pattern):
    dfa = regex_dfa(pattern)
    assert_dfa_agrees_with_re(dfa, pattern, ALPHABET, samples=3000, max_len=14)
    assert dfa.num_states == _exact_minimum(dfa)


def test_long_bounded_string_is_minimal_and_linear():
    dfa = regex_dfa(f'"{JSON_CHAR}{{0,400}}"')
    assert dfa.num_states == _exact_minimum(dfa)
    unit = regex_dfa(JSON_CHAR).num_states
    assert dfa.num_states <= 400 * unit + 3
    assert dfa.fullmatch(('"' + "é\\u00e9a" * 133 + '"').encode())
    assert not dfa.fullmatch(('"' + "é" * 401 + '"').encode())


def test_extra_key_dfa_of_an_open_object_is_minimised():
    schema = {"type": "object", "properties": {f"field_{i}": {"type": "integer"} for i in range(20)}}
    patterns = [line.split(": /", 1)[1][:-1] for line in json_schema_to_lark(schema).splitlines()
                if ": /" in line and "field" not in line and "u00" in line]
    assert patterns
    for pattern in patterns:
        dfa = regex_dfa(pattern)
        assert dfa.num_states == _exact_minimum(dfa) < 100


def test_hash_collisions_fall_back_to_exact_refinement(monkeypatch):
    want = regex_dfa(r"(?:ab|cd){1,5}|x[0-9]+")
    monkeypatch.setattr(byte_dfa, "_hash_weights", lambda width: np.zeros(width, dtype=np.uint64))
    got = minimize(want.table, want.accepting)  # every row hashes alike: only the fallback can split
    assert got.num_states == want.num_states
    assert np.array_equal(np.sort(got.accepting), np.sort(want.accepting))
    for text in ["ab", "abcd", "cdcdcdcdcd", "cdcdcdcdcdab", "x", "x09", "abx"]:
        assert got.fullmatch(text.encode()) == want.fullmatch(text.encode()) == bool(
            re.fullmatch(r"(?:ab|cd){1,5}|x[0-9]+", text)), text
