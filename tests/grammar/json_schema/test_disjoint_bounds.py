"""oneOf disjointness and terminal overlap on byte DFAs, lazily built ones included, under the compile deadline
(interegular's unchecked construction once ran 17 minutes past a 10 s deadline)."""
from __future__ import annotations

import re

import pytest

from lightllm_struct.grammar.deadline import Deadline, compiling_within
from lightllm_struct.grammar.errors import CompileTimeout
from lightllm_struct.grammar.json_schema.disjoint import regexes_disjoint
from lightllm_struct.grammar.json_schema.lalr_check import overlap
from lightllm_struct.grammar.lexing.dfa_cache import dfas_intersect, terminal_dfa
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA

# (a, b, some string both match or None): long counted repeats are built lazily
PAIRS = [
    ("a{1,3000}", "b{1,3000}", None),
    ("a{1,3000}", "a{2999,4000}", "a" * 2999),
    ("[ab]{1,3000}", "xb+", None),
    ("[ab]{1,3000}", "b+", "b"),
    ("[0-9]{5,2500}", "12345", "12345"),
    ("[0-9]{5,2500}", "1234", None),
]


@pytest.mark.parametrize("a, b, witness", PAIRS)
def test_lazy_products_decide_like_the_languages(a, b, witness):
    da, db = (terminal_dfa(r, None, max_states=20_000) for r in (a, b))
    assert isinstance(da, LazyDFA)
    if witness is not None:  # the independent check: Python's re on a common string
        assert re.fullmatch(a, witness) and re.fullmatch(b, witness)
    assert dfas_intersect(da, db) == (witness is not None) == overlap(a, b)
    assert regexes_disjoint(a, b) == (witness is None)


def test_disjointness_stops_at_the_deadline():
    with compiling_within(Deadline(0.0)), pytest.raises(CompileTimeout):
        regexes_disjoint("c{1,2900}d", "[cd]{1,2900}")
