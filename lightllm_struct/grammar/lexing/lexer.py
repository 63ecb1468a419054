"""Contextual byte lexers: one product DFA per set of live terminals.

In a parser configuration only the terminals the parser can shift there (plus ``%ignore`` terminals) are
live. Their byte DFAs run in parallel as one product DFA, built for the reachable part only. Lexing is
longest match without backtracking: follow transitions while there are any; when the next byte has none,
the terminal accepted by the current state ends (ties: higher lark priority, then literal over regex,
then definition order) and lexing restarts on that byte in the parser's new configuration.
State 0 is the fresh start and is never re-entered, so "at a terminal boundary" is simply state 0.
"""
from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA
from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA
from lightllm_struct.grammar.lexing.lazy_lexer import FoldedLexer, LazyUnionLexer
from lightllm_struct.grammar.lexing.product_jit import product
from lightllm_struct.grammar.parsing.lr import Terminal

# A lazy product lexer makes states only as generation reaches them, but one long generation inside a
# long bounded string still visits about (characters) x (states per character) of them.
LAZY_STATES_FACTOR = 4


@dataclass(eq=False)
class UnionLexer:
    """Product DFA of ``terminals``: ``table[q, b]`` -> next state or -1; ``accept[q]`` -> terminal id or -1."""

    uid: int
    terminals: frozenset[int]
    table: np.ndarray  # int16 or int32 [n, 256] (``narrow``)
    accept: np.ndarray  # int32 [n]
    rows: Sequence = field(repr=False)  # the table as one int array per state (LazyRows): fast per-byte stepping
    accept_list: list[int] = field(repr=False)
    # signature[q]: content of q (DFA digest and state of each alive terminal, in preference order, and
    # whether q is the fresh start). A token scan from q depends on nothing else, so lexers of other
    # terminal sets, and other grammars over the same vocabulary, share scans.
    signature: list[tuple] = field(repr=False)
    alive_terms: list[tuple[int, ...]] = field(repr=False)  # terminal ids of the signature's entries
    # Filled lazily by the grammar's TokenMasker (a lexer belongs to one grammar): mask cache ids.
    mask_base: list = field(default=None, repr=False)
    # has_out[q]: some byte continues the current lexeme (cheap termination checks)
    has_out: list = field(default=None, repr=False)
    # flat int64 table plus an all-dead sink row (state num_states) for vectorized scans; made on first use
    # (``sink_table``): a compile builds every state's lexer, a generation scans from few of them
    sink: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.mask_base = [None] * len(self.accept_list)
        if self.has_out is None:
            self.has_out = (self.table >= 0).any(axis=1).tolist()

    @property
    def sink_table(self) -> np.ndarray:
        if self.sink is None:
            n = self.table.size
            sink = np.empty(n + 256, dtype=np.int64)
            sink[:n] = self.table.reshape(-1)
            sink[n:] = -1
            self.sink = sink
        return self.sink

    @property
    def num_states(self) -> int:
        return int(self.table.shape[0])

    def prepare(self, q: int) -> None:
        """Make what a token scan from ``q`` reads: nothing to do, every row is made (see LazyUnionLexer)."""

    def __reduce__(self):
        # Sent as what it was built from: rows, sink table and has_out are derived, and a lazy signature
        # travels as its inputs (the component states), not as every state's tuples (a 250-key lexer's
        # made a grammar of 90 MB on the wire and 300 MB in the process that loaded it).
        signature = self.signature
        contents = signature._owner if isinstance(signature, _PerState) else None
        parts = (contents.ids, contents.digests, contents.classes, contents.comps) if contents else None
        return _rebuilt_union, (self.uid, self.terminals, self.table, self.accept, self.accept_list,
                                parts or signature, None if parts else self.alive_terms, self.mask_base)


@runtime_checkable
class Lexer(Protocol):
    """The contract :class:`UnionLexer`, ``LazyUnionLexer`` and ``FoldedLexer`` share: per-state sequences the
    matcher steps and token scans read. Read ``signature[q]`` (or call ``prepare(q)``) before a scan from ``q``:
    a lazy lexer makes the rows the scan walks then.

    ``rows[q][b]``: next state or -1; ``accept_list[q]``: the terminal id ``q`` ends, or -1; ``has_out[q]``:
    some byte continues the lexeme; ``alive_terms[q]``: the terminal ids of ``signature[q]``'s entries;
    ``mask_base[q]``: the mask cache id the grammar's TokenMasker gives ``q``; ``table``/``sink_table``/
    ``accept``: the scan arrays (``sink_table`` is ``table`` flat plus an all-dead row).
    """

    uid: int
    terminals: frozenset[int]
    rows: Sequence
    accept_list: list[int]
    signature: Sequence
    alive_terms: list[tuple[int, ...]]
    mask_base: list
    has_out: Sequence
    sink_table: np.ndarray
    accept: np.ndarray

    @property
    def num_states(self) -> int: ...

    @property
    def table(self) -> np.ndarray: ...

    def prepare(self, q: int) -> None: ...


def rank_key(term: Terminal) -> tuple:
    """Sort key: the preferred terminal first when several accept the same lexeme."""
    return (-term.priority, term.literal is None, term.order)


def build_union(uid: int, live: frozenset[int], dfas: list, terminals: tuple[Terminal, ...], *,
                max_states: int, horizon: int, deadline: Deadline = NO_DEADLINE) -> UnionLexer | LazyUnionLexer | FoldedLexer:
    """Reachable product of the DFAs of ``live``; ``horizon`` is the longest token in bytes.

    When one of the DFAs is a :class:`LazyDFA`, the product is lazy too (``lazy_lexer.py``): its states
    are made as lexing reaches them (a lone lazy DFA gets folded scan rows).

    Raises
    ------
    GrammarTooComplex
        More than ``max_states`` product states.
    """
    ids = sorted(live, key=lambda t: rank_key(terminals[t]))  # component order = preference order
    if len(ids) == 1 and isinstance(dfas[ids[0]], LazyDFA):
        return FoldedLexer(uid, live, ids[0], dfas[ids[0]], horizon=horizon,
                           max_states=max_states * LAZY_STATES_FACTOR)
    if any(isinstance(dfas[t], LazyDFA) for t in ids):
        return LazyUnionLexer(uid, live, ids, [dfas[t] for t in ids], horizon=horizon,
                              max_states=max_states * LAZY_STATES_FACTOR)
    if not ids:
        table = np.full((1, 256), -1, dtype=np.int32)
        return UnionLexer(uid, live, table, np.full(1, -1, np.int32), row_arrays(table), [-1], [(True, ())], [()])
    if len(ids) == 1:
        return _single(uid, live, ids[0], dfas[ids[0]], horizon)
    tables = [dfas[t].table for t in ids]
    accepting = [dfas[t].accepting for t in ids]
    built = product(tables, max_states=max_states)
    if built is None:
        table, comps = _numpy_product(tables, max_states, deadline)
    elif built[0] is None:
        raise GrammarTooComplex(f"lexer DFA exceeds {max_states} states")
    else:
        table, comps = built
    # Kept for the grammar's life (every LR state's lexer): in the narrowest type that holds them, and
    # copied out of the product's buffers, which grow by doubling.
    table, comps = narrow(table), narrow(comps)
    alive_mask = comps >= 0
    wins = np.zeros(comps.shape, dtype=bool)
    for k in range(len(ids)):
        wins[:, k] = alive_mask[:, k] & accepting[k][np.maximum(comps[:, k], 0)]
    wins[0] = False  # the fresh start never ends a terminal: no empty lexemes
    first_win = wins.argmax(axis=1)
    acc = np.where(wins.any(axis=1), np.asarray(ids, dtype=np.int32)[first_win], -1).astype(np.int32)
    signature, alive_terms = _contents(ids, dfas, comps, alive_mask, horizon)
    return UnionLexer(uid, live, table, acc, LazyRows(table), acc.tolist(), signature, alive_terms)


def _contents(ids: list[int], dfas: list, comps: np.ndarray, alive_mask: np.ndarray,
              horizon: int) -> tuple["_PerState", "_PerState"]:
    """``signature`` and ``alive_terms`` of the product states, each made when a scan or a step first reads
    it (a compile builds every LR state's lexer, a generation reads few of their states)."""
    del alive_mask  # read per state from ``comps``
    contents = _Contents(ids, [dfas[t].digest for t in ids], [dfas[t].bounded_classes(horizon) for t in ids], comps)
    return contents.signature, contents.alive_terms


class _Contents:
    """Computes a product state's signature and alive terminals from its components' states, into two
    per-state maps (``_PerState``) that keep what was made."""

    __slots__ = ("ids", "digests", "classes", "comps", "alone", "signature", "alive_terms")

    def __init__(self, ids: list[int], digests: list[bytes], classes: list[list[int]], comps: np.ndarray) -> None:
        self.ids, self.digests, self.classes, self.comps = ids, digests, classes, comps
        self.alone = [(t,) for t in ids]
        self.signature = _PerState(self)
        self.alive_terms = _PerState(self)

    def make(self, q: int) -> None:
        if not 0 <= q < len(self.comps):
            raise IndexError(f"lexer state {q} out of range")
        c = self.comps[q].tolist()
        ks = [k for k, s in enumerate(c) if s >= 0]
        entries = tuple((self.digests[k], self.classes[k][c[k]]) for k in ks)
        self.signature[q] = (q == 0, entries)
        self.alive_terms[q] = self.alone[ks[0]] if len(ks) == 1 else tuple(self.ids[k] for k in ks)


class _PerState(dict):
    """A per-state sequence made on first access (see LazyRows); pickled as the plain list it stands for."""

    __slots__ = ("_owner",)

    def __init__(self, owner: _Contents) -> None:
        super().__init__()
        self._owner = owner

    def __missing__(self, q: int):
        self._owner.make(q)
        return dict.__getitem__(self, q)

    def __len__(self) -> int:
        return len(self._owner.comps)

    def __iter__(self):
        return (self[q] for q in range(len(self._owner.comps)))

    def __reduce__(self):
        return list, (list(self),)


def _numpy_product(tables: list[np.ndarray], max_states: int, deadline: Deadline) -> tuple[np.ndarray, np.ndarray]:
    """``product_jit.product`` in numpy (where numba is not installed)."""
    n_comp = len(tables)
    index: dict[tuple, int] = {("init",): 0}
    order: list[tuple] = [tuple(0 for _ in tables)]
    rows: list[np.ndarray] = []
    while len(rows) < len(order):
        if len(rows) % 64 == 0:
            deadline.check()
        comps = order[len(rows)]
        nxt = np.stack([tables[k][s] if s >= 0 else np.full(256, -1, np.int32) for k, s in enumerate(comps)])
        cols = np.ascontiguousarray(nxt.T)
        _, first, inverse = np.unique(cols.view(np.dtype((np.void, 4 * n_comp))).reshape(-1),
                                      return_index=True, return_inverse=True)
        dest = np.empty(len(first), dtype=np.int32)
        for j, col in enumerate(map(tuple, cols[first].tolist())):
            if max(col) < 0:
                dest[j] = -1
                continue
            if col not in index:
                if len(order) >= max_states:
                    raise GrammarTooComplex(f"lexer DFA exceeds {max_states} states")
                index[col] = len(order)
                order.append(col)
            dest[j] = index[col]
        rows.append(dest[inverse.reshape(-1)])
    return np.stack(rows).astype(np.int32), np.array(order, dtype=np.int32).reshape(len(order), n_comp)


def _single(uid: int, live: frozenset[int], term: int, dfa: ByteDFA, horizon: int) -> UnionLexer:
    """One live terminal: its DFA shifted by one, behind a fresh start that is never re-entered.

    Everything but the mask ids depends only on (DFA, terminal id, horizon), and the DFAs of common
    terminals are shared by every grammar of the process: their lexer arrays are built once.
    """
    parts = dfa.memo(("single", term, horizon), lambda: _single_parts(term, dfa, horizon))
    table, acc, rows, accept_list, signature, alive_terms, has_out, sink_table = parts
    return UnionLexer(uid, live, table, acc, rows, accept_list, signature, alive_terms,
                      has_out=has_out, sink=sink_table)


def _single_parts(term: int, dfa: ByteDFA, horizon: int) -> tuple:
    table = np.vstack([dfa.table[:1], dfa.table]).astype(np.int32)
    table = np.where(table >= 0, table + 1, -1).astype(np.int32)
    acc = np.where(dfa.accepting, term, -1).astype(np.int32)
    acc = np.concatenate([np.array([-1], dtype=np.int32), acc])
    classes = dfa.bounded_classes(horizon)
    digest = dfa.digest
    signature = [(True, ((digest, classes[0]),))] + [(False, ((digest, c),)) for c in classes]
    sink_table = np.concatenate([table.reshape(-1), np.full(256, -1, np.int32)]).astype(np.int64)
    return (table, acc, LazyRows(table), acc.tolist(), signature, [(term,)] * len(acc),
            (table >= 0).any(axis=1).tolist(), sink_table)


def narrow(a: np.ndarray) -> np.ndarray:
    """A compact copy of ``a`` (state numbers, -1 for none): int16 when every value fits, else int32."""
    dtype = np.int16 if a.size == 0 or int(a.max()) < 1 << 15 else np.int32
    return np.array(a, dtype=dtype, order="C")


def _rebuilt_union(uid, terminals, table, accept, accept_list, signature, alive_terms, mask_base) -> UnionLexer:
    """A pickled ``UnionLexer`` (see its ``__reduce__``): ``signature`` is a list, or the lazy one's inputs."""
    if alive_terms is None:
        contents = _Contents(*signature)
        signature, alive_terms = contents.signature, contents.alive_terms
    lexer = UnionLexer(uid, terminals, table, accept, LazyRows(table), accept_list, signature, alive_terms)
    lexer.mask_base = mask_base
    return lexer


class LazyRows(dict):
    """``rows[q]``: state ``q``'s row of ``table`` as an ``array('i')`` (see row_arrays), made on first access
    and kept. A compile builds the lexer of every LR state, a generation steps through few of their states;
    a hit is a dict lookup (two threads making one row make equal ones)."""

    __slots__ = ("_table",)

    def __init__(self, table: np.ndarray) -> None:
        super().__init__()
        self._table = np.ascontiguousarray(table)  # int16 or int32 (``narrow``)

    def __missing__(self, q: int) -> array:
        if not 0 <= q < len(self._table):
            raise IndexError(f"lexer state {q} out of range")
        row = array("i", self._table[q].astype(np.int32).tobytes())
        self[q] = row
        return row

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self):  # a sequence of rows, like row_arrays' list (not the dict's keys)
        return (self[q] for q in range(len(self._table)))


def row_arrays(table: np.ndarray) -> list[array]:
    """The rows of ``table`` as ``array('i')`` objects: indexed as fast as lists, but the garbage
    collector sees one object a row instead of 256 references (full collections of a process holding
    many lexers took over 100 ms with lists, and landed inside mask computations)."""
    data = np.ascontiguousarray(table, dtype=np.int32).tobytes()
    width = table.shape[1] * 4
    return [array("i", data[o:o + width]) for o in range(0, len(data), width)]
