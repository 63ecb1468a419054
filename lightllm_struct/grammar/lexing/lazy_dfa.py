"""Byte DFAs built on demand: subset construction one state at a time, as lexing reaches it.

A long counted repeat (a JSON string with ``maxLength: 2000``) has a DFA of about (states of one character)
x (count) states at byte level: 40,000 for that string, seconds to build eagerly and tens of megabytes. A
generation visits a thin slice of it (the states a few hundred bytes around its position), so, like the
derivative-based lexer of llguidance, states are made only when reached. Rows are exact: a lazy DFA
accepts exactly the language of the eager one (tests compare them on random strings).

Two properties the lexers rely on hold here too:

* every state can reach acceptance (NFA nodes that cannot reach the final node are pruned first, so a
  non-empty subset is always live);
* ``shape(s)`` is a key such that states with equal keys accept the same strings of at most ``horizon``
  bytes, so token masks computed at one count serve its neighbours (see ``_RepeatInfo``).
"""
from __future__ import annotations

import itertools
import threading

import numpy as np

from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline, current_deadline
from lightllm_struct.grammar.errors import GrammarTooComplex

_UIDS = itertools.count()
_NODE_ROWS_CACHED = 4096  # dense byte rows of NFA nodes kept per DFA (1 KiB each)


class LazyDFA:
    """A DFA over bytes whose states are made on first use (state 0 initial, -1 dead).

    Parameters
    ----------
    nfa, start, final:
        A byte NFA (``regex_nfa.ByteNFA``) and its start and accepting nodes.
    max_states:
        States this DFA may ever make; more raises :class:`GrammarTooComplex`.
    repeats:
        Copy layouts of the NFA's big counted repeats (``regex_nfa.RepeatCopies``), for ``shape``.
    """

    def __init__(self, nfa, start: int, final: int, *, max_states: int, repeats: tuple = ()) -> None:
        self.uid = next(_UIDS)
        self.digest = b"lazy-%d" % self.uid  # a unique content key, as ByteDFA.digest is for eager DFAs
        self.max_states = max_states
        self._edges, self._eps = nfa.edges_of, nfa.eps_of  # the NFA may reserve copies (ByteNFA virtual)
        if nfa.has_empty_set:
            nfa.materialize(0, len(nfa.edges))
        self._live = _coreachable(nfa, final) if nfa.has_empty_set else _ALL_LIVE
        self._final = final
        self._repeats = repeats
        self._closures: dict[frozenset, frozenset] = {}
        self._node_rows: dict[int, np.ndarray | None] = {}
        self._folded: dict = {}
        self._steps: dict[int, int] = {}  # state * 256 + byte -> state, for rows not made
        self._index: dict[frozenset, int] = {}
        self._sets: list[frozenset] = []
        self._accepting: list[bool] = []
        self._shapes: list = []
        self._rows: list = []  # np.int32[256] per made row, None until then
        self._succ: list = []  # distinct next states per made row (window walks)
        self._lock = threading.RLock()
        first = self._closure(frozenset([start]) if self._live[start] else frozenset())
        self._state_of(first)

    # -- the DFA interface the lexers use ---------------------------------------------------------
    @property
    def num_states(self) -> int:
        """States made so far (not the size of the whole DFA)."""
        return len(self._sets)

    def row(self, state: int) -> np.ndarray:
        """Next states of ``state`` for every byte (-1: dead); made on first call."""
        got = self._rows[state]
        if got is None:
            with self._lock:
                got = self._rows[state]
                if got is None:
                    got = self._make_row(self._sets[state])
                    self._succ[state] = [t for t in np.unique(got).tolist() if t >= 0]
                    self._rows[state] = got
        return got

    def step(self, state: int, byte: int) -> int:
        """The state after ``byte`` (-1: dead), without making the whole row (the matcher's path)."""
        row = self._rows[state]
        if row is not None:
            return int(row[byte])
        key = state * 256 + byte
        got = self._steps.get(key)
        if got is None:
            with self._lock:
                targets = frozenset(t for n in self._sets[state] for lo, hi, t in self._edges(n)
                                    if lo <= byte <= hi and self._live[t])
                got = self._state_of(self._closure(targets)) if targets else -1
                self._steps[key] = got
        return got

    def has_out(self, state: int) -> bool:
        """Whether some byte continues from ``state`` (an edge to a live node; no row needed)."""
        return any(self._live[t] for n in self._sets[state] for _, _, t in self._edges(n))

    def successors(self, state: int) -> list[int]:
        """Distinct next states of ``state`` (its row is made if needed)."""
        self.row(state)
        return self._succ[state]

    def is_accepting(self, state: int) -> bool:
        return self._accepting[state]

    def shape(self, state: int, horizon: int):
        """A key equal for states that accept the same strings of at most ``horizon`` bytes."""
        key = self._shapes[state]
        return ("far", key[2]) if foldable(key, horizon) else ("state", state)

    def shape_key(self, state: int) -> tuple:
        """``shape_of`` of ``state``'s node set."""
        return self._shapes[state]

    def subset(self, state: int) -> frozenset:
        return self._sets[state]

    def state_of(self, subset: frozenset) -> int:
        """The state of an eps-closed node set (made if new; any such set has exact rows)."""
        with self._lock:
            return self._state_of(subset)

    def accepts_set(self, subset: frozenset) -> bool:
        return self._final in subset

    @property
    def repeats(self) -> tuple:
        return self._repeats

    def folded(self, horizon: int):
        """The token-scan rows of this DFA for ``horizon``-byte tokens (``lazy_folded.FoldedScan``)."""
        from lightllm_struct.grammar.lexing.lazy_folded import FoldedScan

        with self._lock:
            got = self._folded.get(horizon)
            if got is None:
                got = self._folded[horizon] = FoldedScan(self, horizon)
        return got

    def fullmatch(self, data: bytes) -> bool:
        state = 0
        for b in data:
            state = int(self.row(state)[b])
            if state < 0:
                return False
        return self._accepting[state]

    def explore(self, depth: int, *, limit: int, deadline: Deadline = NO_DEADLINE) -> int:
        """Make every state within ``depth`` bytes of the start; returns how many there are.

        Raises
        ------
        GrammarTooComplex
            More than ``limit`` states lie that close to the start (an explosive regex such as
            ``(a|b)*a(a|b){40}``): refused at compile time instead of while generating.
        """
        seen = {0}
        frontier = [0]
        for _ in range(depth):
            deadline.check()
            nxt = []
            for s in frontier:
                for t in self.successors(s):
                    if t not in seen:
                        seen.add(t)
                        nxt.append(t)
                if len(seen) > limit:
                    raise GrammarTooComplex(f"regex DFA has over {limit} states within {depth} bytes of its start")
            if not nxt:
                break
            frontier = nxt
        return len(seen)

    # -- construction -----------------------------------------------------------------------------
    def _closure(self, nodes: frozenset) -> frozenset:
        got = self._closures.get(nodes)
        if got is None:
            seen = set(nodes)
            todo = list(nodes)
            while todo:
                for nxt in self._eps(todo.pop()):
                    if nxt not in seen and self._live[nxt]:
                        seen.add(nxt)
                        todo.append(nxt)
            got = self._closures[nodes] = frozenset(seen)
        return got

    def _state_of(self, subset: frozenset) -> int:
        got = self._index.get(subset)
        if got is None:
            if len(self._sets) >= self.max_states:
                raise GrammarTooComplex(f"regex DFA exceeds {self.max_states} states")
            got = self._index[subset] = len(self._sets)
            self._sets.append(subset)
            self._accepting.append(self._final in subset)
            self._shapes.append(shape_of(subset, self._repeats))
            self._rows.append(None)
            self._succ.append(None)
        return got

    def _make_row(self, subset: frozenset) -> np.ndarray:
        # Rows are made lazily, also inside a step's mask (issue 11: ``(x{0,300}){0,300}`` made rows for 8 s in
        # one mask): the caller's deadline (a compile's, or the step's mask budget) is checked before any
        # change, so an interrupted row leaves the automaton as it was.
        current_deadline().check()
        index, targets = self.targets(subset)
        ids = np.array([self._state_of(t) for t in targets] + [-1], dtype=np.int32)
        return ids[index]

    def targets(self, subset: frozenset) -> tuple[np.ndarray, list[frozenset]]:
        """The eps-closed node sets ``subset`` moves to: (per byte an index into the list, or -1; the list)."""
        rows = [self._node_row(n) for n in subset if self._edges(n)]
        if any(r is None for r in rows):
            return self._targets_by_cuts(subset)
        if not rows:
            return np.full(256, -1, dtype=np.int64), []
        if len(rows) == 1:  # the common case: one node reads bytes (a DFA-shaped repeat copy)
            values, index = np.unique(rows[0], return_inverse=True)
            sets = [self._closure(frozenset((t,))) if t >= 0 else frozenset() for t in values.tolist()]
            index = index.reshape(-1).astype(np.int64)
        else:
            cols = np.ascontiguousarray(np.stack(rows).T)
            _, first, index = np.unique(cols.view(np.dtype((np.void, 4 * len(rows)))).reshape(-1),
                                        return_index=True, return_inverse=True)
            sets = [self._closure(frozenset(t for t in col if t >= 0)) for col in cols[first].tolist()]
            index = index.reshape(-1).astype(np.int64)
        empty = [k for k, t in enumerate(sets) if not t]
        if empty:  # the dead target (at most one: equal columns were merged)
            index[index == empty[0]] = -1
        return index, sets

    def _node_row(self, node: int) -> np.ndarray | None:
        """Target node per byte of ``node`` (-1: none); None if two of its edges share a byte."""
        got = self._node_rows.get(node, False)
        if got is False:
            got = np.full(256, -1, dtype=np.int32)
            for lo, hi, t in self._edges(node):
                if not self._live[t]:
                    continue
                if (got[lo:hi + 1] >= 0).any():
                    got = None
                    break
                got[lo:hi + 1] = t
            if len(self._node_rows) >= _NODE_ROWS_CACHED:
                self._node_rows.clear()
            self._node_rows[node] = got
        return got

    def _targets_by_cuts(self, subset: frozenset) -> tuple[np.ndarray, list[frozenset]]:
        live = self._live
        edges = [e for node in subset for e in self._edges(node) if live[e[2]]]
        index = np.full(256, -1, dtype=np.int64)
        sets: list[frozenset] = []
        position: dict[frozenset, int] = {}
        cuts = sorted({0, 256} | {lo for lo, _, _ in edges} | {hi + 1 for _, hi, _ in edges})
        for a, b in zip(cuts, cuts[1:]):
            targets = frozenset(t for lo, hi, t in edges if lo <= a <= hi)
            if targets:
                dest = self._closure(targets)
                if dest not in position:
                    position[dest] = len(sets)
                    sets.append(dest)
                index[a:b] = position[dest]
        return index, sets


class _AllLive:
    def __getitem__(self, node: int) -> bool:
        return True


_ALL_LIVE = _AllLive()


def _coreachable(nfa, final: int) -> list[bool]:
    """Nodes from which the final node can be reached (the others can only lead to dead ends)."""
    preds: list[list[int]] = [[] for _ in nfa.edges]
    for src, (out, eps) in enumerate(zip(nfa.edges, nfa.eps)):
        for _, _, t in out:
            preds[t].append(src)
        for t in eps:
            preds[t].append(src)
    live = [False] * len(nfa.edges)
    live[final] = True
    todo = [final]
    while todo:
        for p in preds[todo.pop()]:
            if not live[p]:
                live[p] = True
                todo.append(p)
    return live


def foldable(shape: tuple, horizon: int) -> bool:
    """Whether a state of this ``_shape_of`` is equivalent to its moved form for ``horizon`` bytes."""
    return shape[0] == "far" and shape[1] > horizon and shape[3] > horizon


def shape_of(subset: frozenset, repeats: tuple):
    """("far", margin, key, moved margin) when ``subset`` has nodes in the optional copies of a big repeat.

    The optional copies of ``U{lo,hi}`` are identical, adjacent node blocks, each linked to the next and
    to the repeat's end. A node in copy ``j`` accepts the same strings of at most ``m`` bytes as the node
    at the same place in copy ``j + d`` while both copies lie more than ``m`` copies before the last one:
    ``U`` is not nullable where this matters (otherwise the closure already reaches the last copy and
    ``margin`` is 0), so every further copy costs at least one byte. A subset's strings are the union of
    its nodes' strings, so subsets that differ only by moving their copy nodes are equivalent within
    ``margin`` bytes. The key is the subset with its copy nodes moved to start at copy 0 (whose own
    margin is the fourth entry).
    """
    for rep in repeats:
        inside = [n for n in subset if rep.first <= n < rep.stop]
        if not inside:
            continue
        k = (min(inside) - rep.first) // rep.size
        top = (max(inside) - rep.first) // rep.size
        shift = k * rep.size
        moved = frozenset(n - shift if rep.first <= n < rep.stop else n for n in subset)
        return ("far", rep.copies - 1 - top, (rep.first, moved), rep.copies - 1 - (top - k))
    return ("state",)
