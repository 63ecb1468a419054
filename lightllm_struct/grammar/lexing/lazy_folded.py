"""Token-scan rows of a lazy DFA with its long counted repeat folded onto a few representatives.

A token scan from a lexer state reads at most ``horizon`` bytes. Inside ``U{0,2000}``, a state whose copy
nodes lie more than ``horizon`` copies before the last one accepts, within ``horizon`` bytes, exactly what
its *moved form* (the same nodes moved to copy 0) accepts (``lazy_dfa.shape_of``). So the rows a scan
walks can lead to moved forms instead of exact states: the moved forms near copy 0 are a handful of node
sets, made once and shared by every position in the string, where the exact states ahead of each
position would be thousands per position. The matcher itself steps exact rows (``LazyDFA.row``); only
scans use these.

Codes: ``2 * s`` is exact state ``s``, ``2 * r + 1`` is representative ``r``, ``-1`` is dead.
"""
from __future__ import annotations

import threading

import numpy as np

from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA, foldable, shape_of


class FoldedScan:
    """Scan rows of ``dfa`` for tokens of at most ``horizon`` bytes (thread-safe, memoising)."""

    def __init__(self, dfa: LazyDFA, horizon: int) -> None:
        self.dfa, self.horizon = dfa, horizon
        self._rep_of: dict = {}
        self.rep_sets: list[frozenset] = []
        self.rep_keys: list = []
        self._lock = threading.RLock()

    def code_of_state(self, state: int) -> int:
        shape = self.dfa.shape_key(state)
        return self._rep(shape) if foldable(shape, self.horizon) else 2 * state

    def exact_row(self, state: int) -> np.ndarray:
        """Codes per byte from exact state ``state``: far successors become representatives."""
        row = self.dfa.row(state)
        values, index = np.unique(row, return_inverse=True)
        codes = np.array([self.code_of_state(t) if t >= 0 else -1 for t in values.tolist()], dtype=np.int64)
        return codes[index.reshape(-1)]

    def rep_row(self, rep: int) -> np.ndarray:
        """Codes per byte from representative ``rep`` (its moved node set stepped exactly)."""
        index, sets = self.dfa.targets(self.rep_sets[rep])
        codes = np.array([self._code_of_set(t) for t in sets] + [-1], dtype=np.int64)
        return codes[index]

    def rep_accepting(self, rep: int) -> bool:
        return self.dfa.accepts_set(self.rep_sets[rep])

    def _code_of_set(self, subset: frozenset) -> int:
        if not subset:
            return -1
        shape = shape_of(subset, self.dfa.repeats)
        if foldable(shape, self.horizon):
            return self._rep(shape)
        return 2 * self.dfa.state_of(subset)  # exact rows are right for any node set

    def _rep(self, shape: tuple) -> int:
        key = shape[2]
        got = self._rep_of.get(key)
        if got is None:
            with self._lock:
                got = self._rep_of.get(key)
                if got is None:
                    self.rep_sets.append(key[1])
                    self.rep_keys.append(("far", key))
                    got = self._rep_of[key] = len(self.rep_sets) - 1
        return 2 * got + 1
