"""Regexes to byte DFAs: minimal eager DFAs, or lazily built ones for long counted repeats.

A regex becomes a byte NFA (``regex_nfa.py``: Python's parser, character sets as UTF-8 byte-range
sequences), then subset construction and Moore minimisation (``byte_dfa.minimize``) give the DFA. A
regex with a counted repeat of ``LAZY_MIN_COUNT`` or more becomes a ``LazyDFA`` instead (its eager DFA
would be (states of one repetition) x (count) states). Every loop is bounded by a state limit and checks
the compile deadline, so no regex can hang compilation.
"""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA, minimize
from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing import subset_jit
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA
from lightllm_struct.grammar.lexing.regex_nfa import C, build_nfa, parse_regex


def regex_dfa(pattern: str, *, max_states: int = 10_000, deadline: Deadline = NO_DEADLINE) -> ByteDFA:
    """Compile a Python-syntax regex (full match semantics) into a minimal byte DFA.

    Raises
    ------
    RegexError
        The pattern is invalid or uses a feature a DFA cannot express (look-around, back-references,
        anchors).
    GrammarTooComplex
        The automaton would exceed ``max_states``.
    CompileTimeout
        ``deadline`` passed.
    """
    def unit_dfa(unit_nfa, unit_start: int, unit_final: int) -> tuple[np.ndarray, np.ndarray]:
        unit = minimize(*_determinize(unit_nfa, unit_start, unit_final, max_states, deadline), deadline,
                        all_live=not unit_nfa.has_empty_set)
        return unit.table, unit.accepting

    nfa, start, final = build_nfa(pattern, max_nodes=max_states * 8, deadline=deadline, unit_dfa=unit_dfa)
    table, accepting = _determinize(nfa, start, final, max_states, deadline)
    return minimize(table, accepting, deadline, all_live=not nfa.has_empty_set)


# A counted repeat with at least this upper bound makes a regex lazy (see lazy_regex_dfa).
LAZY_MIN_COUNT = 256


def wants_lazy(pattern: str) -> bool:
    """Whether ``pattern`` holds a counted repeat long enough that its DFA is better built lazily.

    Raises
    ------
    RegexError
        The pattern is invalid.
    """
    todo = [list(parse_regex(pattern)[0])]
    while todo:
        for op, av in todo.pop():
            if op in (C.MAX_REPEAT, C.MIN_REPEAT):
                if av[1] != C.MAXREPEAT and av[1] >= LAZY_MIN_COUNT:
                    return True
                todo.append(list(av[2]))
            elif op == C.SUBPATTERN:
                todo.append(list(av[3]))
            elif op == C.BRANCH:
                todo.extend(list(alt) for alt in av[1])
    return False


def lazy_regex_dfa(pattern: str, *, max_states: int = 10_000, unit_max_states: int | None = None,
                   deadline: Deadline = NO_DEADLINE) -> LazyDFA:
    """``pattern`` as a :class:`LazyDFA`: the NFA is built now, DFA states as lexing reaches them.

    ``max_states`` bounds the states ever made (and the NFA at 8 nodes a state); ``unit_max_states``
    (default ``max_states``) bounds the eager DFA of one unit of a counted repeat, built now.

    Raises
    ------
    RegexError, GrammarTooComplex, CompileTimeout
    """
    def unit_dfa(unit_nfa, unit_start: int, unit_final: int) -> tuple[np.ndarray, np.ndarray]:
        unit = minimize(*_determinize(unit_nfa, unit_start, unit_final, unit_max_states or max_states, deadline),
                        deadline, all_live=not unit_nfa.has_empty_set)
        return unit.table, unit.accepting

    nfa, start, final = build_nfa(pattern, max_nodes=max_states * 8, deadline=deadline, unit_dfa=unit_dfa,
                                  virtual=True)
    return LazyDFA(nfa, start, final, max_states=max_states, repeats=tuple(nfa.repeats))


def _closure(nfa, nodes) -> frozenset:
    seen = set(nodes)
    todo = list(nodes)
    while todo:
        for nxt in nfa.eps[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def _intervals(edges: list[tuple[int, int, int]]) -> list[tuple[int, int, frozenset]]:
    """``(a, b, targets)``: the byte ranges ``a..b-1`` on which the edges reach the same non-empty targets.

    A sweep over the range ends (edges open and close), not a scan of every edge per range.
    """
    if len(edges) == 1:
        lo, hi, t = edges[0]
        return [(lo, hi + 1, frozenset((t,)))]
    edges = sorted(edges)
    if all(a[1] < b[0] for a, b in zip(edges, edges[1:])):  # disjoint (DFA-shaped nodes): ranges as they are
        return [(lo, hi + 1, frozenset((t,))) for lo, hi, t in edges]
    events: dict[int, list] = {}
    for lo, hi, t in edges:
        events.setdefault(lo, []).append((1, t))
        events.setdefault(hi + 1, []).append((-1, t))
    active: dict[int, int] = {}
    out = []
    points = sorted(events)
    for p, nxt in zip(points, points[1:] + [256]):
        for step, t in events[p]:
            count = active.get(t, 0) + step
            if count:
                active[t] = count
            else:
                del active[t]
        if active and p < nxt:
            out.append((p, nxt, frozenset(active)))
    return out


def _determinize(nfa, start: int, final: int, max_states: int, deadline: Deadline):
    if subset_jit.AVAILABLE and not nfa.virtual:
        return subset_jit.determinize(nfa, start, final, max_states, deadline)
    return _determinize_py(nfa, start, final, max_states, deadline)


def _determinize_py(nfa, start: int, final: int, max_states: int, deadline: Deadline):
    """Subset construction in Python (``subset_jit``'s without numba; tests compare the two)."""
    closures: dict[frozenset, frozenset] = {}  # many cuts lead to the same NFA targets

    def closure_of(targets: frozenset) -> frozenset:
        got = closures.get(targets)
        if got is None:
            got = closures[targets] = _closure(nfa, targets)
        return got

    first = _closure(nfa, [start])
    index = {first: 0}
    order = [first]
    rows: list[np.ndarray] = []
    while len(rows) < len(order):
        if len(rows) % 32 == 0:
            deadline.check()
        edges = [e for node in order[len(rows)] for e in nfa.edges[node]]
        row = np.full(256, -1, dtype=np.int32)
        for a, b, targets in _intervals(edges):
            dest = closure_of(targets)
            if dest not in index:
                if len(order) >= max_states:
                    raise GrammarTooComplex(f"regex DFA exceeds {max_states} states")
                index[dest] = len(order)
                order.append(dest)
            row[a:b] = index[dest]
        rows.append(row)
    accepting = np.array([final in s for s in order], dtype=bool)
    return np.stack(rows), accepting
