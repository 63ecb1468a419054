"""Byte NFAs: reserved (virtual) repeat copies read exactly like copies built for real."""
from __future__ import annotations

import pytest

from lightllm_struct.grammar.deadline import NO_DEADLINE
from lightllm_struct.grammar.lexing.regex_nfa import build_nfa


@pytest.mark.parametrize("pattern", [
    r"a{0,100}",
    r'"(?:[^"\\]|\\u[0-9a-f]{4}){3,300}"',
    r"(?:x(?:ab){0,70}y){0,80}z",  # a big repeat inside a big repeat: the inner one is made real
    r"(?:(?:ab){0,90}|c)d{0,64}",
])
def test_virtual_copies_equal_real_ones(pattern):
    real, start, final = build_nfa(pattern, max_nodes=10**6, deadline=NO_DEADLINE)
    virtual, v_start, v_final = build_nfa(pattern, max_nodes=10**6, deadline=NO_DEADLINE, virtual=True)
    assert (start, final) == (v_start, v_final) and len(real.edges) == len(virtual.edges)
    assert any(e is None for e in virtual.edges), "expected reserved copies"
    for node in range(len(real.edges)):
        assert virtual.edges_of(node) == real.edges[node], node
        assert sorted(virtual.eps_of(node)) == sorted(real.eps[node]), node
    # the copy layouts lazy DFAs fold over are the same, reserved or not
    assert {r for r in real.repeats if r.copies >= 64} <= set(virtual.repeats)
