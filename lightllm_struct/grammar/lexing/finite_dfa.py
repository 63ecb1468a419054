"""The minimal DFA of a finite set of byte strings, built directly (no regex, no dense trie table).

Declared keys, ``const`` and ``enum`` strings and choice lists are finite sets. Through a regex, each such
terminal cost about a millisecond (parse, NFA, subset construction, Moore rounds) however short; a dense
256-wide trie table before minimisation held 1 KB a trie node (a 76 KB choice list: 292 MB). Here the trie is
sparse and is minimised bottom-up as it is read: a state is registered by its content (accepting, and its
byte -> successor pairs) once its successors have their final ids, which is exact for acyclic automata, so
only the minimal states are ever laid out as table rows.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA

_END = -1  # trie key marking a node where a string ends


def finite_dfa(strings: Iterable[bytes], *, max_states: int = 20_000, deadline: Deadline = NO_DEADLINE) -> ByteDFA:
    """The minimal DFA accepting exactly ``strings`` (an empty set: a lone non-accepting state).

    Raises
    ------
    GrammarTooComplex
        The minimal DFA has more than ``max_states`` states.
    CompileTimeout
        ``deadline`` passed.
    """
    root: dict = {}
    for k, data in enumerate(sorted(strings)):  # sorted: the same table in every process (digests agree)
        node = root
        for b in data:
            node = node.setdefault(b, {})
        node[_END] = True
        if k % 1024 == 1023:
            deadline.check()
    ids: dict[tuple, int] = {}
    contents: list[tuple] = []
    done: dict[int, int] = {}  # id(trie node) -> state (post-order: keys may be long, no recursion)
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if not expanded:
            stack.append((node, True))
            stack.extend((kid, False) for b, kid in node.items() if b != _END)
            continue
        key = (_END in node, tuple(sorted((b, done[id(kid)]) for b, kid in node.items() if b != _END)))
        state = ids.get(key)
        if state is None:
            if len(contents) >= max_states:
                raise GrammarTooComplex(f"DFA of a finite set exceeds {max_states} states")
            if len(contents) % 1024 == 1023:
                deadline.check()
            state = ids[key] = len(contents)
            contents.append(key)
        done[id(node)] = state
    if not root:
        return ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
    last = len(contents) - 1  # the root, registered last: renumbered to 0 (successors are numbered before)
    table = np.full((len(contents), 256), -1, dtype=np.int32)
    accepting = np.zeros(len(contents), dtype=bool)
    for state, (final, edges) in enumerate(contents):
        row = last - state
        accepting[row] = final
        for b, dst in edges:
            table[row, b] = last - dst
    return ByteDFA(table, accepting, minimal=True)
