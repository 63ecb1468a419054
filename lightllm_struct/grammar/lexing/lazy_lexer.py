"""Product lexers made on demand, for terminal sets that hold a lazily built DFA (``lazy_dfa.py``).

Same semantics and the same interface (``lexer.Lexer``) as ``lexer.UnionLexer``: the matcher steps ``rows``, token scans
read ``sink_table``/``table``/``accept`` from a state after reading its ``signature``. Two tables:

* ``rows[q]``: exact transitions, made when the matcher first steps from ``q``;
* the scan table: the rows a token scan (at most ``horizon`` bytes) walks. ``signature[q]`` first makes
  every scan row within ``horizon`` bytes of ``q`` (``prepare``); rows not made yet are all dead.

:class:`LazyUnionLexer` (several terminals) scans exact rows. :class:`FoldedLexer` (one lazy terminal,
e.g. a long bounded string in a value position) scans rows folded onto representatives
(``lazy_folded.py``), so the scan rows of a 2000-character string are a few dozen, not 40,000.
The scan table grows by doubling; a scan keeps the arrays it read (accept is published first), and every
row it can reach was made before it started.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA
from lightllm_struct.grammar.lexing.lazy_folded import FoldedScan

_DEAD = np.full(256, -1, dtype=np.int32)


class _Lazy(Sequence):
    """A read-only per-state sequence whose items are computed on access."""

    def __init__(self, owner: "_LazyLexer", get) -> None:
        self._owner, self._get = owner, get

    def __getitem__(self, q):
        return self._get(q)

    def __len__(self) -> int:
        return len(self._owner.accept_list)


class _LazyLexer:
    """Growing scan table, lazily made rows and windows; subclasses say what a state is."""

    def __init__(self, uid: int, live: frozenset[int], *, horizon: int, max_states: int) -> None:
        self.uid, self.terminals = uid, live
        self._horizon, self._max_states = horizon, max_states
        self._made = np.zeros(0, dtype=bool)
        self._succ: list = []
        self._row_lists: dict[int, list[int]] = {}
        self._windows: set[int] = set()
        self._signatures: list = []
        self.accept_list: list[int] = []
        self.alive_terms: list[tuple[int, ...]] = []
        self.mask_base: list = []
        self.sink_table = np.full(256, -1, dtype=np.int64)
        self.accept = np.zeros(0, dtype=np.int32)
        self._lock = threading.RLock()
        self.rows = _Lazy(self, self._row_list)
        self.signature = _Lazy(self, self._signature)
        self.has_out = _Lazy(self, self._has_out)

    @property
    def num_states(self) -> int:
        """Rows of ``table`` (the sink row of ``sink_table`` follows them); only made ones are reachable."""
        return len(self.sink_table) // 256 - 1

    @property
    def table(self) -> np.ndarray:
        return self.sink_table[:-256].reshape(-1, 256)

    def prepare(self, q: int) -> None:
        """Make every scan row a token (at most ``horizon`` bytes) can pass through from ``q``."""
        if q in self._windows:
            return
        with self._lock:
            if self._succ[q] is None:
                self._make_scan_row(q)
            if all(t in self._windows for t in self._succ[q]):  # their windows reach one byte further
                self._windows.add(q)
                return
            succ = self._succ
            seen = {q}
            frontier = [q]
            for _ in range(self._horizon):
                nxt = []
                for s in frontier:
                    if succ[s] is None:
                        self._make_scan_row(s)
                    for t in succ[s]:
                        if t not in seen:
                            seen.add(t)
                            nxt.append(t)
                if not nxt:  # closed under successors: every state seen has all its rows made
                    self._windows.update(seen)
                    return
                frontier = nxt
            self._windows.add(q)

    # -- for subclasses ---------------------------------------------------------------------------
    def _new_state(self, winner: int, alive: tuple[int, ...], signature) -> int:
        q = len(self.accept_list)
        if q >= self._max_states:
            raise GrammarTooComplex(f"lexer DFA exceeds {self._max_states} states")
        if q + 1 >= self.num_states:
            self._grow(max(64, 2 * (q + 1)))
        self.accept[q] = winner  # published before the state can be reached
        self.accept_list.append(winner)
        self.alive_terms.append(alive)
        self._signatures.append(signature)
        self.mask_base.append(None)
        self._succ.append(None)
        return q

    def _set_scan_row(self, q: int, dest: np.ndarray) -> None:
        self.sink_table[q * 256:(q + 1) * 256] = dest
        self._succ[q] = [t for t in np.unique(dest).tolist() if t >= 0]
        self._made[q] = True

    # -- internals --------------------------------------------------------------------------------
    def _grow(self, rows: int) -> None:
        table = np.full((rows + 1) * 256, -1, dtype=np.int64)
        table[:len(self.sink_table) - 256] = self.sink_table[:-256]
        accept = np.full(rows, -1, dtype=np.int32)
        accept[:len(self.accept)] = self.accept
        made = np.zeros(rows, dtype=bool)
        made[:len(self._made)] = self._made
        # accept first: a scan reads the table, then accept, which must cover every row of that table
        self.accept, self._made = accept, made
        self.sink_table = table

    def _row_list(self, q: int) -> list[int]:
        got = self._row_lists.get(q)
        if got is None:
            with self._lock:
                got = self._row_lists[q] = self._exact_row(q)
        return got

    def _has_out(self, q: int) -> bool:
        return max(self._row_list(q)) >= 0

    def _signature(self, q: int):
        # Scans read signature[q] right before they start: making the window here keeps every scan
        # on made rows (callers may also call prepare(q) first).
        self.prepare(q)
        return self._signatures[q]

    def _make_scan_row(self, q: int) -> None:
        raise NotImplementedError

    def _exact_row(self, q: int) -> list[int]:
        raise NotImplementedError


class LazyUnionLexer(_LazyLexer):
    """Product of ``dfas`` (ByteDFA or LazyDFA, in preference order) with a fresh start state 0."""

    def __init__(self, uid: int, live: frozenset[int], ids: list[int], dfas: list, *, horizon: int,
                 max_states: int) -> None:
        super().__init__(uid, live, horizon=horizon, max_states=max_states)
        self._ids, self._dfas = ids, dfas
        self._keys = [d.digest for d in dfas]
        self._index: dict[tuple, int] = {}
        self._comps: list[tuple] = []
        self._state(("init",), tuple(0 for _ in dfas))

    def _state(self, key: tuple, comps: tuple) -> int:
        alive = [k for k, s in enumerate(comps) if s >= 0]
        first = not self._comps
        winner = -1
        if not first:  # the fresh start never ends a terminal: no empty lexemes
            winner = next((self._ids[k] for k in alive if _accepts(self._dfas[k], comps[k])), -1)
        signature = (first, tuple((self._keys[k], _shape(self._dfas[k], comps[k], self._horizon)) for k in alive))
        q = self._new_state(winner, tuple(self._ids[k] for k in alive), signature)
        self._index[key] = q
        self._comps.append(comps)
        return q

    def _make_scan_row(self, q: int) -> None:
        comps = self._comps[q]
        nxt = np.stack([_component_row(d, s) for d, s in zip(self._dfas, comps)])
        cols = np.ascontiguousarray(nxt.T)
        _, first, inverse = np.unique(cols.view(np.dtype((np.void, 4 * len(comps)))).reshape(-1),
                                      return_index=True, return_inverse=True)
        dest = np.empty(len(first), dtype=np.int64)
        for j, col in enumerate(map(tuple, cols[first].tolist())):
            got = self._index.get(col)
            dest[j] = -1 if max(col) < 0 else got if got is not None else self._state(col, col)
        self._set_scan_row(q, dest[inverse.reshape(-1)])

    def _exact_row(self, q: int) -> list[int]:
        if not self._made[q]:
            self._make_scan_row(q)
        return self.sink_table[q * 256:(q + 1) * 256].tolist()


class FoldedLexer(_LazyLexer):
    """One lazy terminal: exact states for the matcher, folded scan rows for token scans."""

    def __init__(self, uid: int, live: frozenset[int], term: int, dfa: LazyDFA, *, horizon: int,
                 max_states: int) -> None:
        super().__init__(uid, live, horizon=horizon, max_states=max_states)
        self._term, self._dfa = term, dfa
        self._fold = dfa.folded(horizon)
        self._of_code: dict[int, int] = {}
        self._code: list[int] = []  # lexer state -> code (exact 2s, representative 2r+1)
        self._add(0, fresh=True)

    def _add(self, code: int, *, fresh: bool = False) -> int:
        if code & 1:
            r = code >> 1
            accepting, shape = self._fold.rep_accepting(r), self._fold.rep_keys[r]
        else:
            s = code >> 1
            accepting, shape = self._dfa.is_accepting(s), self._dfa.shape(s, self._horizon)
        winner = self._term if accepting and not fresh else -1
        q = self._new_state(winner, (self._term,), (fresh, ((self._dfa.digest, shape),)))
        self._code.append(code)
        if not fresh:
            self._of_code[code] = q
        return q

    def _state(self, code: int) -> int:
        got = self._of_code.get(code)
        return got if got is not None else self._add(code)

    def _make_scan_row(self, q: int) -> None:
        code = self._code[q]
        if q > 0 and not code & 1:
            rep = self._fold.code_of_state(code >> 1)
            if rep & 1:  # far inside the repeat: scan as its representative (equal within the horizon)
                r = self._state(rep)
                if self._succ[r] is None:
                    self._make_scan_row(r)
                self._set_scan_row(q, self.sink_table[r * 256:(r + 1) * 256].copy())
                return
        codes = self._fold.rep_row(code >> 1) if code & 1 else self._fold.exact_row(code >> 1)
        values, index = np.unique(codes, return_inverse=True)
        ids = np.array([self._state(c) if c >= 0 else -1 for c in values.tolist()], dtype=np.int64)
        self._set_scan_row(q, ids[index.reshape(-1)])

    def _exact_row(self, q: int):
        code = self._code[q]
        assert not code & 1, "the matcher only reaches exact states"
        return _StepRow(self, code >> 1)

    def _has_out(self, q: int) -> bool:
        code = self._code[q]
        return self._dfa.has_out(code >> 1)

    def _step(self, state: int, byte: int) -> int:
        nxt = self._dfa.step(state, byte)
        return -1 if nxt < 0 else self._state(2 * nxt)


class _StepRow:
    """``rows[q]`` of a FoldedLexer: each byte's next state is found when first asked for. The matcher
    steps one byte of a row at a time, so a long string costs one DFA transition per byte it writes,
    not a whole row."""

    __slots__ = ("_lexer", "_state", "_memo")

    def __init__(self, lexer: FoldedLexer, state: int) -> None:
        self._lexer, self._state, self._memo = lexer, state, {}

    def __getitem__(self, byte: int) -> int:
        got = self._memo.get(byte)
        if got is None:
            with self._lexer._lock:
                got = self._memo[byte] = self._lexer._step(self._state, byte)
        return got

    def __len__(self) -> int:
        return 256

    def __iter__(self):
        return (self[b] for b in range(256))


def _component_row(dfa, state: int) -> np.ndarray:
    if state < 0:
        return _DEAD
    return dfa.row(state) if isinstance(dfa, LazyDFA) else dfa.table[state]


def _accepts(dfa, state: int) -> bool:
    return dfa.is_accepting(state) if isinstance(dfa, LazyDFA) else bool(dfa.accepting[state])


def _shape(dfa, state: int, horizon: int):
    """What a token scan from this component state depends on (see ``ByteDFA.bounded_classes``)."""
    return dfa.shape(state, horizon) if isinstance(dfa, LazyDFA) else dfa.bounded_classes(horizon)[state]
