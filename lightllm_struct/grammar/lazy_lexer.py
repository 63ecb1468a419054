"""Product lexers made on demand, for terminal sets that hold a lazily built DFA (``lazy_dfa.py``).

Same semantics and the same interface as ``lexer.UnionLexer`` (the matcher steps ``rows``, token scans
read ``sink_table``/``table``/``accept``), but a product state's row is made when first needed:

* ``rows[q]`` makes the row of ``q`` (the matcher steps only through states it reaches);
* ``signature[q]`` first makes every state within ``horizon`` bytes of ``q``, because a token scan from
  ``q`` (which reads ``signature[q]`` before it starts) walks the dense table that far and no further.
  States beyond that have all-dead rows in the table until they are made.

The table grows by doubling; a scan keeps the array it read, and every row it can reach was made before
it started, so growing never disturbs a running scan.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.lazy_dfa import LazyDFA


class _Lazy(Sequence):
    """A read-only per-state sequence whose items are computed by ``lexer`` on access."""

    def __init__(self, lexer: "LazyUnionLexer", get) -> None:
        self._lexer, self._get = lexer, get

    def __getitem__(self, q):
        return self._get(q)

    def __len__(self) -> int:
        return len(self._lexer.accept_list)


class LazyUnionLexer:
    """Product of ``dfas`` (ByteDFA or LazyDFA, in preference order) with a fresh start state 0."""

    def __init__(self, uid: int, live: frozenset[int], ids: list[int], dfas: list, *, horizon: int,
                 max_states: int) -> None:
        self.uid = uid
        self.terminals = live
        self._ids, self._dfas, self._horizon, self._max_states = ids, dfas, horizon, max_states
        self._keys = [d.digest for d in dfas]
        self._index: dict[tuple, int] = {}
        self._comps: list[tuple] = []
        self._made = np.zeros(0, dtype=bool)
        self._row_lists: dict[int, list[int]] = {}
        self._succ: list = []
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
        self.has_out = _Lazy(self, lambda q: max(self._row_list(q)) >= 0)
        self._new_state(("init",), tuple(0 for _ in dfas))

    @property
    def num_states(self) -> int:
        """Rows of ``table`` (the sink row of ``sink_table`` follows them); only made ones are reachable."""
        return len(self.sink_table) // 256 - 1

    @property
    def table(self) -> np.ndarray:
        return self.sink_table[:-256].reshape(-1, 256)

    # -- states -----------------------------------------------------------------------------------
    def _new_state(self, key: tuple, comps: tuple) -> int:
        q = len(self._comps)
        if q >= self._max_states:
            raise GrammarTooComplex(f"lexer DFA exceeds {self._max_states} states")
        if q + 1 >= self.num_states:
            self._grow(max(64, 2 * (q + 1)))
        alive = [k for k, s in enumerate(comps) if s >= 0]
        winner = -1
        if q > 0:  # the fresh start never ends a terminal: no empty lexemes
            winner = next((self._ids[k] for k in alive if _accepts(self._dfas[k], comps[k])), -1)
        self.accept[q] = winner  # published before the state can be reached
        self._index[key] = q
        self._comps.append(comps)
        self.accept_list.append(winner)
        self.alive_terms.append(tuple(self._ids[k] for k in alive))
        self._signatures.append((q == 0, tuple((self._keys[k], _component_shape(self._dfas[k], comps[k], self._horizon))
                                               for k in alive)))
        self.mask_base.append(None)
        self._succ.append(None)
        return q

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

    def _row(self, q: int) -> np.ndarray:
        """The row of ``q`` as stored in the table (made on first use)."""
        if not self._made[q]:
            with self._lock:
                if not self._made[q]:
                    self._make_row(q)
        return self.sink_table[q * 256:(q + 1) * 256]

    def _make_row(self, q: int) -> None:
        comps = self._comps[q]
        if len(comps) == 1:
            dest = self._single_row(comps[0])
        else:
            dest = self._product_row(comps)
        self.sink_table[q * 256:(q + 1) * 256] = dest
        self._succ[q] = [t for t in np.unique(dest).tolist() if t >= 0]
        self._made[q] = True

    def _single_row(self, state: int) -> np.ndarray:
        """One component: product state ``s + 1`` is component state ``s`` (0 is the fresh start)."""
        row = _component_row(self._dfas[0], state)
        for s in range(len(self._comps) - 1, int(row.max()) + 1):
            self._new_state((s,), (s,))
        return np.where(row >= 0, row.astype(np.int64) + 1, -1)

    def _product_row(self, comps: tuple) -> np.ndarray:
        nxt = np.stack([_component_row(d, s) for d, s in zip(self._dfas, comps)])
        cols = np.ascontiguousarray(nxt.T)
        _, first, inverse = np.unique(cols.view(np.dtype((np.void, 4 * len(comps)))).reshape(-1),
                                      return_index=True, return_inverse=True)
        dest = np.empty(len(first), dtype=np.int64)
        for j, col in enumerate(map(tuple, cols[first].tolist())):
            if max(col) < 0:
                dest[j] = -1
                continue
            got = self._index.get(col)
            dest[j] = got if got is not None else self._new_state(col, col)
        return dest[inverse.reshape(-1)]

    def _row_list(self, q: int) -> list[int]:
        got = self._row_lists.get(q)
        if got is None:
            got = self._row_lists[q] = self._row(q).tolist()
        return got

    def _signature(self, q: int):
        if q not in self._windows:
            self._make_window(q)
        return self._signatures[q]

    def _make_window(self, q: int) -> None:
        """Make the rows of every state a token (at most ``horizon`` bytes) can pass through from ``q``."""
        with self._lock:
            seen = {q}
            frontier = [q]
            for _ in range(self._horizon):
                nxt = []
                for s in frontier:
                    self._row(s)
                    for t in self._succ[s]:
                        if t not in seen:
                            seen.add(t)
                            nxt.append(t)
                if not nxt:
                    break
                frontier = nxt
            self._windows.add(q)


_DEAD = np.full(256, -1, dtype=np.int32)


def _component_row(dfa, state: int) -> np.ndarray:
    if state < 0:
        return _DEAD
    return dfa.row(state) if isinstance(dfa, LazyDFA) else dfa.table[state]


def _accepts(dfa, state: int) -> bool:
    return dfa.is_accepting(state) if isinstance(dfa, LazyDFA) else bool(dfa.accepting[state])


def _component_shape(dfa, state: int, horizon: int):
    """What a token scan from this component state depends on (see ``ByteDFA.bounded_classes``)."""
    return dfa.shape(state, horizon) if isinstance(dfa, LazyDFA) else dfa.bounded_classes(horizon)[state]
