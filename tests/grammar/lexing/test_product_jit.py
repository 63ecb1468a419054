"""The compiled product of DFAs equals the numpy construction (up to state numbering)."""
from __future__ import annotations

import numpy as np
import pytest

from lightllm_struct.grammar.deadline import NO_DEADLINE
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing import product_jit
from lightllm_struct.grammar.lexing.lexer import _numpy_product
from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa

PATTERNS = [r'"(?:[^"\\]|\\.)*"', r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?", r"true|false|null", r"(?:ab)*",
            r'"key"', r"[a-z]{2,5}", r"\{", r"(?:a|b)*abb"]

pytestmark = pytest.mark.skipif(not product_jit.AVAILABLE, reason="numba is not installed")


def _same_automaton(t1, c1, t2, c2) -> None:
    """Walk both from state 0 in step: paired states must have equal components and equal rows."""
    pair = {0: 0}
    todo = [0]
    while todo:
        a = todo.pop()
        b = pair[a]
        assert c1[a].tolist() == c2[b].tolist()
        for byte in range(256):
            da, db = int(t1[a, byte]), int(t2[b, byte])
            assert (da < 0) == (db < 0)
            if da >= 0:
                if da not in pair:
                    pair[da] = db
                    todo.append(da)
                assert pair[da] == db
    assert len(pair) == len(t1) == len(t2)


@pytest.mark.parametrize("picks", [(0, 1), (0, 4, 6), (3, 7), (2, 5, 1, 0), (3,) * 2])
def test_compiled_product_equals_numpy(picks):
    tables = [regex_dfa(PATTERNS[i]).table for i in picks]
    jit_table, jit_comps = product_jit.product(tables, max_states=10_000)
    np_table, np_comps = _numpy_product(tables, 10_000, NO_DEADLINE)
    _same_automaton(jit_table, jit_comps, np_table, np_comps)


def test_fresh_start_is_never_reentered():
    tables = [regex_dfa(r"(?:ab)*").table, regex_dfa(r"(?:ab)*c").table]
    table, comps = product_jit.product(tables, max_states=100)
    assert not (table == 0).any()
    assert comps[0].tolist() == [0, 0] and [0, 0] in comps[1:].tolist()


def test_state_limit():
    tables = [regex_dfa(r"[ab]*a[ab]{6}").table, regex_dfa(r"[ab]{0,7}").table]
    assert product_jit.product(tables, max_states=20) == (None, None)
    with pytest.raises(GrammarTooComplex):
        _numpy_product(tables, 20, NO_DEADLINE)


def test_wide_product_equals_numpy():
    """40 components: far past what a packed 62-bit tuple held (the numpy path used to take these)."""
    tables = [regex_dfa(PATTERNS[i % len(PATTERNS)]).table for i in range(40)]
    tables += [regex_dfa(f'"k{i}[a-z]*"').table for i in range(20)]
    jit_table, jit_comps = product_jit.product(tables, max_states=10_000)
    np_table, np_comps = _numpy_product(tables, 10_000, NO_DEADLINE)
    _same_automaton(jit_table, jit_comps, np_table, np_comps)


def test_lone_component_states_equal_numpy():
    """Past the first byte that leaves every key literal only the "any other key" DFA is alive: those states
    take the product's one-component path, and the automaton is still the numpy construction's."""
    from lightllm_struct.grammar.json_schema.key_dfa import key_dfa_excluding
    from lightllm_struct.grammar.lexing.byte_dfa import literal_dfa

    keys = ["base", "height", "length", "é", "😀"]
    tables = [literal_dfa(f'"{k}"'.encode()).table for k in keys] + [key_dfa_excluding(keys).table]
    tables.append(regex_dfa(r"\}").table)
    jit_table, jit_comps = product_jit.product(tables, max_states=10_000)
    np_table, np_comps = _numpy_product(tables, 10_000, NO_DEADLINE)
    _same_automaton(jit_table, jit_comps, np_table, np_comps)
    assert ((jit_comps >= 0).sum(axis=1) == 1).mean() > 0.8  # the path this test is about
