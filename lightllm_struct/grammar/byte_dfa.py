"""Regexes and literals as minimal byte-level DFAs.

``interegular`` parses a regex into a character FSM; every character class becomes the UTF-8
byte-range sequences of its code points (``anything_else`` is the complement of the explicit
characters), which gives a byte NFA whose subset construction and minimisation yield the DFA. Byte level
matters because LLM tokens split UTF-8 characters and cross terminal boundaries.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import interegular
import numpy as np

from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex, RegexError
from lightllm_struct.grammar.utf8 import code_point_ranges, complement_ranges, utf8_sequences


@dataclass(frozen=True, eq=False)
class ByteDFA:
    """A DFA over bytes: state 0 is initial; ``table[s, b]`` is the next state or -1 (dead).

    Every state can reach an accepting state (dead states are removed), so "has a transition" means
    "the input so far is a prefix of some match".
    """

    table: np.ndarray  # int32 [n_states, 256]
    accepting: np.ndarray  # bool [n_states]

    @property
    def num_states(self) -> int:
        return int(self.table.shape[0])

    def fullmatch(self, data: bytes) -> bool:
        state = 0
        for b in data:
            state = int(self.table[state, b])
            if state < 0:
                return False
        return bool(self.accepting[state])


def literal_dfa(data: bytes) -> ByteDFA:
    """The DFA of exactly one byte string (already minimal)."""
    n = len(data) + 1
    table = np.full((n, 256), -1, dtype=np.int32)
    for i, b in enumerate(data):
        table[i, b] = i + 1
    accepting = np.zeros(n, dtype=bool)
    accepting[-1] = True
    return ByteDFA(table, accepting)


def regex_dfa(pattern: str, *, max_states: int = 10_000, deadline: Deadline = NO_DEADLINE) -> ByteDFA:
    """Compile a Python-syntax regex (full match semantics) into a minimal byte DFA.

    Raises
    ------
    RegexError
        The pattern is invalid or uses a feature a DFA cannot express (look-around, back-references).
    GrammarTooComplex
        The DFA would exceed ``max_states``.
    CompileTimeout
        ``deadline`` passed.
    """
    try:
        fsm = interegular.parse_pattern(_expand_unicode_escapes(pattern)).to_fsm()
    except Exception as exc:  # interegular raises several unrelated types for bad or unsupported input
        raise RegexError(f"cannot compile regex {pattern!r}: {type(exc).__name__}: {exc}") from exc
    nfa, starts, finals = _char_fsm_to_byte_nfa(fsm, deadline)
    table, accepting = _determinize(nfa, starts, finals, max_states, deadline)
    return minimize(table, accepting, deadline)


_UNICODE_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.DOTALL)


def _expand_unicode_escapes(pattern: str) -> str:
    """Replace ``\\uXXXX`` / ``\\UXXXXXXXX`` (which interegular rejects) by the escaped character."""

    def sub(m: re.Match) -> str:
        if m.group(3) is not None:
            return m.group(0)
        return re.escape(chr(int(m.group(1) or m.group(2), 16)))

    return _UNICODE_ESCAPE.sub(sub, pattern)


def _symbol_ranges(fsm) -> dict:
    """Code point ranges of every alphabet symbol of an interegular FSM."""
    explicit: set[int] = set()
    by_symbol: dict = {}
    other_symbol = None
    for symbol, chars in fsm.alphabet.by_transition.items():
        cps = {ord(c) for c in chars if c is not interegular.fsm.anything_else}
        if any(c is interegular.fsm.anything_else for c in chars):
            other_symbol = symbol
        explicit |= cps
        by_symbol[symbol] = code_point_ranges(cps)
    if other_symbol is not None:
        by_symbol[other_symbol] = by_symbol[other_symbol] + complement_ranges(code_point_ranges(explicit))
    return by_symbol


def _char_fsm_to_byte_nfa(fsm, deadline: Deadline):
    """Byte NFA with edges ``node -> [(lo, hi, target)]``; chains are shared by (target, suffix)."""
    states = sorted(fsm.states)
    node_of = {s: i for i, s in enumerate(states)}
    nfa: list[list[tuple[int, int, int]]] = [[] for _ in states]
    chain: dict[tuple, int] = {}
    sequences = {sym: [seq for lo, hi in rs for seq in utf8_sequences(lo, hi)]
                 for sym, rs in _symbol_ranges(fsm).items()}

    def node_for(target: int, suffix: tuple) -> int:
        if not suffix:
            return target
        key = (target, suffix)
        if key not in chain:
            chain[key] = len(nfa)
            nfa.append([])
            nxt = node_for(target, suffix[1:])
            nfa[chain[key]].append((suffix[0][0], suffix[0][1], nxt))
        return chain[key]

    for s in states:
        deadline.check()
        for symbol, dest in fsm.map.get(s, {}).items():
            target = node_of[dest]
            for seq in sequences.get(symbol, ()):
                nfa[node_of[s]].append((seq[0][0], seq[0][1], node_for(target, seq[1:])))
    finals = {node_of[s] for s in fsm.finals}
    return nfa, frozenset([node_of[fsm.initial]]), finals


def _determinize(nfa, start: frozenset, finals: set, max_states: int, deadline: Deadline):
    index = {start: 0}
    order = [start]
    rows: list[np.ndarray] = []
    while len(rows) < len(order):
        deadline.check()
        subset = order[len(rows)]
        edges = [e for node in subset for e in nfa[node]]
        cuts = sorted({0, 256} | {lo for lo, _, _ in edges} | {hi + 1 for _, hi, _ in edges})
        row = np.full(256, -1, dtype=np.int32)
        for a, b in zip(cuts, cuts[1:]):
            dest = frozenset(t for lo, hi, t in edges if lo <= a <= hi)
            if not dest:
                continue
            if dest not in index:
                if len(order) >= max_states:
                    raise GrammarTooComplex(f"regex DFA exceeds {max_states} states")
                index[dest] = len(order)
                order.append(dest)
            row[a:b] = index[dest]
        rows.append(row)
    accepting = np.array([bool(s & finals) for s in order], dtype=bool)
    return np.stack(rows), accepting


def minimize(table: np.ndarray, accepting: np.ndarray, deadline: Deadline = NO_DEADLINE) -> ByteDFA:
    """Moore partition refinement (vectorized) plus removal of states that cannot reach acceptance."""
    n = table.shape[0]
    full = np.vstack([np.where(table < 0, n, table), np.full((1, 256), n, dtype=np.int32)])
    acc = np.append(accepting, False)
    cls = acc.astype(np.int64)
    n_cls = len(np.unique(cls))
    while True:
        deadline.check()
        sig = np.ascontiguousarray(np.concatenate([cls[:, None], cls[full]], axis=1))
        ids: dict[bytes, int] = {}
        new = np.fromiter((ids.setdefault(row.tobytes(), len(ids)) for row in sig), np.int64, len(sig))
        if len(ids) == n_cls:
            break
        cls, n_cls = new, len(ids)
    return _renumber(full, acc, cls, n)


def _renumber(full: np.ndarray, acc: np.ndarray, cls: np.ndarray, sink: int) -> ByteDFA:
    """Build the quotient DFA with the initial state first and the dead class as -1."""
    dead = cls[sink]
    rep: dict[int, int] = {}
    new_id: dict[int, int] = {}
    todo = [cls[0]]
    if cls[0] == dead:  # matches nothing: a lone non-accepting state
        return ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
    for s in range(len(cls)):
        rep.setdefault(int(cls[s]), s)
    new_id[int(cls[0])] = 0
    order = [int(cls[0])]
    while todo:
        c = int(todo.pop())
        for d in np.unique(cls[full[rep[c]]]):
            d = int(d)
            if d != dead and d not in new_id:
                new_id[d] = len(order)
                order.append(d)
                todo.append(d)
    mapping = np.full(int(cls.max()) + 1, -1, dtype=np.int32)
    for c, i in new_id.items():
        mapping[c] = i
    table = np.stack([mapping[cls[full[rep[c]]]] for c in order]).astype(np.int32)
    accepting = np.array([bool(acc[rep[c]]) for c in order], dtype=bool)
    return ByteDFA(table, accepting)
