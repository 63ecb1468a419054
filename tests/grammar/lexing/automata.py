"""Language equality of two byte DFAs, for tests that build one automaton two ways."""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA


def same_language(a: ByteDFA, b: ByteDFA) -> bool:
    """Every reachable pair of states agrees on acceptance and on which bytes lead anywhere (both DFAs are
    trim: every state reaches acceptance), so no byte string tells them apart."""
    seen = {(0, 0)}
    todo = [(0, 0)]
    while todo:
        p, q = todo.pop()
        ra, rb = a.table[p], b.table[q]
        if a.accepting[p] != b.accepting[q] or not np.array_equal(ra >= 0, rb >= 0):
            return False
        live = ra >= 0
        for pair in set(zip(ra[live].tolist(), rb[live].tolist())) - seen:
            seen.add(pair)
            todo.append(pair)
    return True
