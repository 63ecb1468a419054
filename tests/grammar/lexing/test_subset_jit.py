"""The compiled subset construction gives the same minimal DFAs as the Python one."""
from __future__ import annotations

import re

import pytest

from lightllm_struct.grammar.deadline import NO_DEADLINE
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing import regex_dfa as rd
from lightllm_struct.grammar.lexing import subset_jit
from lightllm_struct.grammar.lexing.byte_dfa import minimize

pytestmark = pytest.mark.skipif(not subset_jit.AVAILABLE, reason="numba is not installed")

PATTERNS = [r'"(?:[^"\\]|\\.)*"', r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", r"true|false|null", r"(?:ab)*", "",
            r"[a-zé]{2,5}", r"(?:a|b)*abb", r"\d+\s*[^\x00-\x7f]+", r"(?:x|y{3})*z?", r"[^a]|\u20ac{2}",
            r'"(?:(?:[^"\\k]|\\["\\/bfnrt]|\\u006[0-9A-Fa-f]|k(?:[^"\\e]|e[^"\\y]))(?:[^"\\]|\\.)*|k|ke)"']


def _minimal(pattern: str, determinize):
    nfa, start, final = rd.build_nfa(pattern, max_nodes=100_000, deadline=NO_DEADLINE)
    table, accepting = determinize(nfa, start, final, 10_000, NO_DEADLINE)
    dfa = minimize(table, accepting, NO_DEADLINE, all_live=not nfa.has_empty_set)
    return dfa.table.tolist(), dfa.accepting.tolist()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_same_minimal_dfa_as_python(pattern):
    assert _minimal(pattern, subset_jit.determinize) == _minimal(pattern, rd._determinize_py)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_dfa_agrees_with_re(pattern):
    dfa = rd.regex_dfa(pattern)
    for text in ["", "ab", "abb", '"k"', '"ke"', '"key"', '"x"', "12", "-0.5", "true", "\u20ac\u20ac", "xyyyz",
                 "7 é", "aaabb", '"\\u0061"']:
        assert dfa.fullmatch(text.encode()) == (re.fullmatch(pattern, text) is not None), text


def test_state_limit():
    nfa, start, final = rd.build_nfa(r"[ab]*a[ab]{9}", max_nodes=100_000, deadline=NO_DEADLINE)
    with pytest.raises(GrammarTooComplex):
        subset_jit.determinize(nfa, start, final, 100, NO_DEADLINE)
