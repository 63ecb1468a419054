"""The additional-property key's minimal byte DFA, built from the key list (keys.py writes the same language
as a regex for the grammar text; this builds its automaton without parsing that 5-80 KB regex).

The language: ``"`` + JSON string units + ``"`` whose decoded text is no declared key. Its minimal DFA has
two parts. The *unit part* is the minimal DFA of any JSON string (``"`` + ANY_UNIT* + ``"``), made once per
process by the regex path: its loop state (between units), the states inside one unit (after ``\\u00``, after
a UTF-8 lead byte, ...), the final state. The *trie part* has one state per (trie node of the keys over code
points, prefix of a unit that can still spell a child's code point). A trie state's row is the unit part's
row for its unit prefix, with the bytes that keep spelling a child redirected, and ``"`` dead where a key
ends: a byte that leaves every child leaves the trie for good (the string then spells no key).

The trie part is acyclic, so it is minimised bottom-up by hashing each state's (unit state, redirects) once
its successors have their final ids; no trie state ever equals a unit-part state (a trie state's language
is its unit state's minus some non-empty set of key spellings), so the result is minimal when the unit part
is. Case variants of hex digits lead to one state (same prefix class), as they do in the regex path.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA
from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa
from lightllm_struct.grammar.json_schema.strings import ANY_UNIT

_QUOTE = 0x22
_SHORT = {0x22: b'"', 0x5C: b"\\", 0x2F: b"/", 0x08: b"b", 0x0C: b"f", 0x0A: b"n", 0x0D: b"r", 0x09: b"t"}
_SURROGATES = (0xD800, 0xDFFF)

Spelling = tuple[bytes, ...]
"""One spelling of a code point: per byte position, the bytes allowed there (a hex digit in either case)."""


@functools.lru_cache(maxsize=1)
def _units() -> tuple[np.ndarray, int, int]:
    """(table, loop state, final state) of the minimal DFA of any JSON string; state 0 is before ``"``."""
    dfa = regex_dfa('"(?:' + (ANY_UNIT or "") + ')*"', max_states=1000)
    loop = int(dfa.table[0, _QUOTE])
    final = int(dfa.table[loop, _QUOTE])
    if not (loop > 0 and final > 0 and dfa.accepting[final] and (dfa.table[final] < 0).all()
            and int(np.flatnonzero(dfa.accepting).size) == 1):
        raise AssertionError("unexpected shape of the JSON string DFA")
    return dfa.table, loop, final


@functools.lru_cache(maxsize=4096)
def spellings(cp: int) -> tuple[Spelling, ...]:
    """Every byte spelling of code point ``cp`` inside a JSON string (``cp`` no surrogate)."""
    out: list[Spelling] = []
    if cp >= 0x20 and cp not in (0x22, 0x5C):
        out.append(tuple(bytes([b]) for b in chr(cp).encode("utf-8")))
    if cp in _SHORT:
        out.append((b"\\", _SHORT[cp]))
    halves = [cp] if cp < 0x10000 else [0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)]
    escaped: list[bytes] = []
    for half in halves:
        escaped += [b"\\", b"u"] + [bytes(sorted({ord(d), ord(d.upper())})) for d in f"{half:04x}"]
    out.append(tuple(escaped))
    return tuple(out)


def key_dfa_excluding(keys: Sequence[str], *, max_states: int = 20_000,
                      deadline: Deadline = NO_DEADLINE) -> ByteDFA:
    """The minimal byte DFA of the JSON strings (with quotes, any spelling) that decode to none of ``keys``.

    Raises
    ------
    ValueError
        A key holds a lone surrogate (see ``has_lone_surrogate``: keys.py's regex is the one definition there).
    GrammarTooComplex
        More than ``max_states`` states.
    CompileTimeout
        ``deadline`` passed.
    """
    if any(has_lone_surrogate(key) for key in keys):
        raise ValueError("a key with a lone surrogate: build its automaton from keys.py's regex")
    units, loop, final = _units()
    trie = _trie(keys)
    builder = _Builder(units, loop, max_states, deadline)
    root = builder.node(trie)
    n_units = units.shape[0]
    n = n_units + len(builder.classes)
    table = np.empty((n, 256), dtype=np.int32)
    table[:n_units] = units
    table[n_units:] = units[np.asarray(builder.classes, dtype=np.int64)]
    if builder.src:
        table[np.asarray(builder.src), np.asarray(builder.byte)] = np.asarray(builder.dst, dtype=np.int32)
    table[0] = -1
    table[0, _QUOTE] = root  # the unit part's own start is left unreachable: it becomes this DFA's start
    accepting = np.zeros(n, dtype=bool)
    accepting[final] = True
    return ByteDFA(table, accepting, minimal=True)


def has_lone_surrogate(key: str) -> bool:
    """Whether ``key`` holds a lone surrogate. keys.py spells one as its escape, and after a high one the walk
    may be inside the key or inside a surrogate pair of a non-key at once: no single (node, unit prefix)
    state says that, and no real schema has such a key, so those key sets keep the regex path."""
    return any(_SURROGATES[0] <= ord(ch) <= _SURROGATES[1] for ch in key)


def _trie(keys: Sequence[str]) -> dict:
    """Code-point trie; ``None`` marks a node where a key ends."""
    root: dict = {}
    for key in keys:
        node = root
        for ch in key:
            node = node.setdefault(ord(ch), {})
        node[None] = True
    return root


class _Builder:
    """Trie states, registered by content: ``classes[i]`` is state ``n_units + i``'s unit state, and
    (``src``, ``byte``, ``dst``) its redirects (-1: a dead ``"``)."""

    def __init__(self, units: np.ndarray, loop: int, max_states: int, deadline: Deadline) -> None:
        self.units = units
        self.loop = loop
        self.offset = units.shape[0]
        self.max_states = max_states
        self.deadline = deadline
        self.classes: list[int] = []
        self.src: list[int] = []
        self.byte: list[int] = []
        self.dst: list[int] = []
        self._ids: dict[tuple, int] = {}

    def node(self, trie: dict) -> int:
        """The state of ``trie``'s root (between units); post-order without recursion (keys may be long)."""
        done: dict[int, int] = {}  # id(trie node) -> state
        stack = [(trie, False)]
        while stack:
            node, expanded = stack.pop()
            if not expanded:
                stack.append((node, True))
                stack.extend((kid, False) for cp, kid in node.items() if cp is not None)
                continue
            kids = {cp: done[id(kid)] for cp, kid in node.items() if cp is not None}
            done[id(node)] = self._between_units(kids, None in node)
        return done[id(trie)]

    def _between_units(self, kids: dict[int, int], key_ends: bool) -> int:
        """The state of a trie node whose children's states are ``kids`` (code point -> state)."""
        # prefix (representative bytes) -> {byte: ("p", longer prefix) | ("s", state)}
        edges: dict[bytes, dict[int, tuple]] = {b"": {}}
        for cp, state in kids.items():
            for spelling in spellings(cp):
                prefix = b""
                for i, allowed in enumerate(spelling):
                    longer = prefix + allowed[:1]
                    target = ("s", state) if i == len(spelling) - 1 else ("p", longer)
                    row = edges[prefix]
                    for b in allowed:
                        row[b] = target
                    if target[0] == "p":
                        edges.setdefault(longer, {})
                    prefix = longer
        ids: dict[bytes, int] = {}
        for prefix in sorted(edges, key=len, reverse=True):  # longer prefixes (successors) first
            redirects = tuple(sorted((b, ids[t[1]] if t[0] == "p" else t[1]) for b, t in edges[prefix].items()))
            if not prefix and key_ends:
                redirects = tuple(sorted(redirects + ((_QUOTE, -1),)))
            ids[prefix] = self._state(self._unit_state(prefix), redirects)
        return ids[b""]

    def _unit_state(self, prefix: bytes) -> int:
        state = self.loop
        for b in prefix:
            state = int(self.units[state, b])
        return state

    def _state(self, unit_state: int, redirects: tuple) -> int:
        if not redirects:  # a node no key passes (the root of no keys): the unit state itself
            return unit_state
        key = (unit_state, redirects)
        got = self._ids.get(key)
        if got is None:
            if self.offset + len(self.classes) >= self.max_states:
                raise GrammarTooComplex(f"regex DFA exceeds {self.max_states} states")
            if len(self.classes) % 256 == 0:
                self.deadline.check()
            got = self._ids[key] = self.offset + len(self.classes)
            self.classes.append(unit_state)
            for b, dst in redirects:
                self.src.append(got)
                self.byte.append(b)
                self.dst.append(dst)
        return got
