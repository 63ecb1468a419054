"""Minimal byte-level DFAs: the ByteDFA type, literals, and Moore minimisation.

Byte level matters because LLM tokens split UTF-8 characters and cross terminal boundaries. Regexes
become ByteDFAs in ``regex_dfa.py``. Minimisation is bounded in work and checks the compile deadline.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline


_MINIMIZE_MAX_STATES = 300  # always minimised exactly
_MINIMIZE_ROUNDS = 32  # bigger DFAs: Moore rounds tried at most (and at most _MINIMIZE_WORK / n)
_MINIMIZE_WORK = 200_000


@dataclass(frozen=True, eq=False)
class ByteDFA:
    """A DFA over bytes: state 0 is initial; ``table[s, b]`` is the next state or -1 (dead).

    Every state can reach an accepting state (dead states are removed), so "has a transition" means
    "the input so far is a prefix of some match".
    """

    table: np.ndarray  # int32 [n_states, 256]
    accepting: np.ndarray  # bool [n_states]
    digest: bytes = b""  # content hash: equal DFAs of different grammars share token scans
    # Moore rounds minimisation took to settle (-1: unknown, e.g. not minimised exactly). Bounded
    # classes of horizon k >= rounds are the states themselves: no need to refine again.
    moore_rounds: int = -1
    # Built minimal (key_dfa, finite_dfa): its states serve as bounded classes at any horizon without
    # refining, as for minimised DFAs of known rounds. Exact past its distinguishing depth (about its longest
    # key's spelling), finer before: sound, as classes only say which states may share masks.
    minimal: bool = False

    def __post_init__(self) -> None:
        h = hashlib.blake2b(self.table.astype(np.int32).tobytes(), digest_size=16)
        h.update(self.accepting.astype(bool).tobytes())
        object.__setattr__(self, "digest", h.digest())
        object.__setattr__(self, "_bounded", {})
        object.__setattr__(self, "_memo", {})

    def memo(self, key, make):
        """``make()``, computed once per DFA and ``key`` (read-only data derived from this DFA)."""
        got = self._memo.get(key)
        if got is None:
            got = self._memo.setdefault(key, make())
        return got

    def bounded_classes(self, k: int) -> list[int]:
        """Class ids of states that no string of at most ``k`` bytes tells apart.

        Token scans read at most the longest token's bytes, so states of one class (say position 300
        and 301 of a 500-character string) get the same token masks and can share cache entries.
        """
        got = self._bounded.get(k)
        if got is None and (self.minimal or 0 <= self.moore_rounds <= k):
            got = self._bounded[k] = list(range(self.num_states))
        if got is None:
            got = self._bounded[k] = _bounded_moore(self.table, self.accepting, k)
        return got

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


def minimize(table: np.ndarray, accepting: np.ndarray, deadline: Deadline = NO_DEADLINE, *,
             all_live: bool = False) -> ByteDFA:
    """Moore partition refinement (vectorized) plus removal of states that cannot reach acceptance.

    ``all_live``: every state is known to reach acceptance (subsets of an NFA without dead nodes), so a
    big DFA whose refinement does not settle needs no liveness search.
    """
    n = table.shape[0]
    full = np.vstack([np.where(table < 0, n, table), np.full((1, 256), n, dtype=np.int32)])
    acc = np.append(accepting, False)
    # bytes whose columns are identical in every state behave alike: refine on one column per class
    _, firsts = np.unique(np.ascontiguousarray(full.T).view(np.dtype((np.void, 4 * (n + 1)))).reshape(-1),
                          return_index=True)
    classes = full[:, np.sort(firsts)]
    # Moore needs one round per distinguishing depth: long counted repeats need hundreds, while big
    # DFAs of key sets (an object's "any other key") collapse in a few rounds (869 -> 25 states), and
    # every later step (product lexers, token scans) pays per state. So big DFAs get a bounded number
    # of rounds; a non-minimal DFA is still exact, so one that does not settle only loses its dead states.
    max_rounds = n + 2 if n <= _MINIMIZE_MAX_STATES else min(_MINIMIZE_ROUNDS, _MINIMIZE_WORK // n)
    cls = acc.astype(np.int64)
    n_cls = len(np.unique(cls))
    for rounds in range(max_rounds):
        deadline.check()
        new = _refine(cls, classes)
        if int(new.max()) + 1 == n_cls:
            return _renumber(full, acc, cls, n, rounds=rounds + 1)
        cls, n_cls = new, int(new.max()) + 1
    if all_live:
        return _renumber(full, acc, np.arange(n + 1, dtype=np.int64), n)
    return _renumber(full, acc, _live_or_dead(classes, acc, n), n)


def _refine(cls: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """One Moore round: states stay together iff their class and their successors' classes agree.

    Rows are compared through a random-weight hash (one 1-D sort instead of a sort of byte strings,
    several times faster on big DFAs); the grouping is then checked row by row against each group's
    first row, and any hash collision falls back to the exact row sort, so the result is always exact.
    """
    sig = np.concatenate([cls[:, None], cls[columns]], axis=1)
    weights = _hash_weights(sig.shape[1])
    with np.errstate(over="ignore"):
        keys = (sig.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    _, first, new = np.unique(keys, return_index=True, return_inverse=True)
    new = new.reshape(-1)
    if not np.array_equal(sig, sig[first[new]]):  # a collision (practically never)
        sig = np.ascontiguousarray(sig)
        _, new = np.unique(sig.view(np.dtype((np.void, 8 * sig.shape[1]))).reshape(-1), return_inverse=True)
        new = new.reshape(-1)
    return new.astype(np.int64)


_HASH_WEIGHTS: dict[int, np.ndarray] = {}


def _hash_weights(width: int) -> np.ndarray:
    got = _HASH_WEIGHTS.get(width)
    if got is None:  # fixed seed: compiles are reproducible
        rng = np.random.default_rng(width)
        got = _HASH_WEIGHTS[width] = rng.integers(1, 2**63, size=width, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return got


def _bounded_moore(table: np.ndarray, accepting: np.ndarray, k: int) -> list[int]:
    n = table.shape[0]
    if n <= 64:  # small DFAs: identity classes are exact enough and free
        return list(range(n))
    full = np.vstack([np.where(table < 0, n, table), np.full((1, 256), n, dtype=np.int32)])
    _, firsts = np.unique(np.ascontiguousarray(full.T).view(np.dtype((np.void, 4 * (n + 1)))).reshape(-1),
                          return_index=True)
    columns = full[:, np.sort(firsts)]
    # three-way start: dead sink, accepting, live non-accepting (a dead transition must never hide)
    cls = np.append(np.where(accepting, 1, 2), 0).astype(np.int64)
    n_cls = 3
    for _ in range(k):
        new = _refine(cls, columns)
        if int(new.max()) + 1 == n_cls:
            break
        cls, n_cls = new, int(new.max()) + 1
    return cls[:n].tolist()


def _live_or_dead(classes: np.ndarray, acc: np.ndarray, sink: int) -> np.ndarray:
    """A partition with one class per state that can reach acceptance and one class for the rest."""
    n = len(classes)
    src = np.repeat(np.arange(n, dtype=np.int64), classes.shape[1])
    keys = np.unique(classes.reshape(-1).astype(np.int64) * n + src)
    preds: dict[int, list[int]] = {}
    for dst, s in zip((keys // n).tolist(), (keys % n).tolist()):
        preds.setdefault(dst, []).append(s)
    live = set(np.flatnonzero(acc).tolist())
    todo = list(live)
    while todo:
        for s in preds.get(todo.pop(), ()):
            if s not in live:
                live.add(s)
                todo.append(s)
    cls = np.full(n, sink, dtype=np.int64)
    idx = np.array(sorted(live), dtype=np.int64)
    cls[idx] = idx
    return cls


def _renumber(full: np.ndarray, acc: np.ndarray, cls: np.ndarray, sink: int, *, rounds: int = -1) -> ByteDFA:
    """Build the quotient DFA with the initial state first and the dead class as -1."""
    dead = int(cls[sink])
    if int(cls[0]) == dead:  # matches nothing: a lone non-accepting state
        return ByteDFA(np.full((1, 256), -1, dtype=np.int32), np.zeros(1, dtype=bool))
    present, rep = np.unique(cls, return_index=True)
    keep = present != dead
    present, rep = present[keep], rep[keep]
    first = int(np.flatnonzero(present == cls[0])[0])
    order = np.concatenate([[first], np.delete(np.arange(len(present)), first)])
    mapping = np.full(int(cls.max()) + 1, -1, dtype=np.int32)
    mapping[present[order]] = np.arange(len(order), dtype=np.int32)
    table = mapping[cls[full[rep[order]]]].astype(np.int32)
    return ByteDFA(table, acc[rep[order]].astype(bool), moore_rounds=rounds)

