"""Shortest completions of LR stacks: the fewest bytes of terminals that bring a stack to acceptance.

The LR tables keep no items, but every LR(0) state has one accessing symbol, so the right-hand side of a
rule is read off the states a reduction pops, and walking each rule from every state that has a goto on
its origin places its items. With ``cost[t]`` the shortest lexeme of terminal ``t`` and ``minlen[A]`` the
cheapest derivation of nonterminal ``A`` (Knuth's generalisation of Dijkstra), a kernel item
``A -> X1..Xj . Xj+1..Xk`` of the top state costs ``rest = sum(cost of Xj+1..Xk)``, and then the stack
continues as ``j`` cells lower with ``A`` pushed. So the completion of a stack is

    P(stack) = min over kernel items (A, j, rest) of the top:  rest + V(cell j below the top, A)

where ``V(c, A)`` is the completion of cell ``c`` with ``goto(c, A)`` pushed on it. ``V(c, .)`` depends
on ``c``'s state and on the ``V`` of cells below, never above: it is computed once per cell (a Dijkstra
over the nonterminals of one state, unit items being the edges) and cached on the immutable cell, so a
step costs O(1) amortised. The item theorem (an item is in the state of a viable prefix iff it is valid
for it) makes every such completion a real sentence of the grammar.

What this does not see (callers check the result against the real automaton where it matters): lexer
longest-match merging of adjacent lexemes, the stack-depth limit, and conflicts lark resolved as shift.
"""
from __future__ import annotations

import heapq
import itertools
import math

from lightllm_struct.grammar.parsing.dpda import Stack
from lightllm_struct.grammar.parsing.lr import SHIFT, LRTables

INF = math.inf
_CACHE_SIZE = 1 << 16  # cached cells; the table starts afresh when full (lookups need no lock)


class StackDistance:
    """``P(stack)`` for one grammar's LR tables, given the shortest lexeme of each terminal.

    Parameters
    ----------
    lr:
        The LALR(1) tables.
    term_cost:
        ``term_cost[t]``: the fewest bytes a lexeme of terminal ``t`` has (``INF`` when it has none).
    """

    def __init__(self, lr: LRTables, term_cost: list[float]) -> None:
        self.lr = lr
        self._term_cost = term_cost
        n_states = len(lr.actions)
        self._step = [dict(g) for g in lr.gotos]  # symbol -> state; terminals as ("t", id)
        for s, row in enumerate(lr.actions):
            for t, (kind, dest) in row.items():
                if kind == SHIFT:
                    self._step[s][("t", t)] = dest
        rhs = _right_hand_sides(lr, self._step)
        self.minlen = _min_lengths(lr, rhs, term_cost)
        self._rest = [_suffix_costs(r, term_cost, self.minlen) for r in rhs]
        self._kernels = _kernel_items(lr, rhs, self._step, self._rest, n_states)
        self._start_nt = next(a for a, d in lr.gotos[lr.start_state].items() if d == lr.end_state)
        self._cells: dict[int, tuple[Stack, dict]] = {}
        self._plans: dict[int, tuple] = {}
        # A cell's vector is read only by cells up to a rule's length above it: what ``window`` returns
        self.reach = max((length for _, length in lr.rules), default=1) or 1
        self._norms: dict[int, tuple] = {}  # id(cell) -> (cell, id of its vector less its least entry, that entry)
        self._interned: dict[frozenset, int] = {}
        self._ids = itertools.count()  # never reused, even once the table starts afresh: old keys never match

    @property
    def start_cost(self) -> float:
        """The shortest sentence of the grammar, in bytes."""
        return self.minlen.get(self._start_nt, INF)  # absent: no finite derivation (an empty language)

    def of(self, stack: Stack) -> float:
        """Fewest terminal bytes after which ``stack`` is accepted (0: it already is)."""
        top = stack[0]
        if top == self.lr.end_state:
            return 0.0
        if stack[2] is None and top == self.lr.start_state:
            return self.minlen.get(self._start_nt, INF)  # absent: no finite derivation (an empty language)
        best = INF
        for origin, j, rest in self._kernels[top]:
            cell = stack
            for _ in range(j):
                cell = cell[2]
            value = rest + self.vector(cell).get(origin, INF)
            if value < best:
                best = value
        return best

    def vector(self, cell: Stack) -> dict:
        """``V(cell, A)`` for every nonterminal ``A`` with a goto from the cell's state."""
        hit = self._cells.get(id(cell))
        if hit is not None and hit[0] is cell:
            return hit[1]
        pending = []  # cells whose vectors are missing, top first; computed bottom up (no recursion)
        while cell is not None:
            hit = self._cells.get(id(cell))
            if hit is not None and hit[0] is cell:
                break
            pending.append(cell)
            cell = cell[2]
        vec = None
        for cell in reversed(pending):
            vec = self._compute(cell)
            if len(self._cells) >= _CACHE_SIZE:
                self._cells = {}
            self._cells[id(cell)] = (cell, vec)
        return vec

    def window(self, cell: Stack | None, n: int) -> tuple[tuple, float]:
        """The vectors of ``n`` cells from ``cell`` down (fewer at the bottom), as a hashable key relative
        to the first one's least entry, and that entry.

        Every value this module computes is a min-plus expression (sums and minima) of vectors, so stacks
        whose keys agree have completions that differ by the difference of their shifts. The one constant
        (0 at the accepting goto) lives in the bottom cell, whose presence and place the key records.
        """
        out = []
        shift = None
        while cell is not None and len(out) < n:
            hit = self._norms.get(id(cell))
            if hit is None or hit[0] is not cell:
                hit = self._normalise(cell)
            if shift is None:
                shift = hit[2]
            out.append((hit[1], hit[2] - shift))
            cell = cell[2]
        return tuple(out), (0.0 if shift is None else shift)

    def _normalise(self, cell: Stack) -> tuple:
        vec = self.vector(cell)
        least = min(vec.values(), default=0.0)
        shape = frozenset((nt, v - least) for nt, v in vec.items())
        vid = self._interned.get(shape)
        if vid is None:
            if len(self._interned) >= _CACHE_SIZE:
                self._interned = {}
            vid = self._interned.setdefault(shape, next(self._ids))  # next() on a count is atomic
        if len(self._norms) >= _CACHE_SIZE:
            self._norms = {}
        hit = self._norms[id(cell)] = (cell, vid, least)
        return hit

    def _compute(self, cell: Stack) -> dict:
        units, deep = self._plan(cell[0])
        dist: dict = {}
        for nt, items in deep.items():
            best = INF
            for origin, j, rest in items:
                if j == 0:  # goto(cell, nt) is the accepting state
                    best = 0.0
                    break
                below = cell
                for _ in range(j):
                    below = below[2]
                if below is not None:
                    best = min(best, rest + self._cached(below).get(origin, INF))
            if best < INF:
                dist[nt] = best
        heap = [(d, nt) for nt, d in dist.items()]
        heapq.heapify(heap)
        done = set()
        while heap:
            d, nt = heapq.heappop(heap)
            if nt in done:
                continue
            done.add(nt)
            for target, rest in units.get(nt, ()):
                if d + rest < dist.get(target, INF):
                    dist[target] = d + rest
                    heapq.heappush(heap, (d + rest, target))
        return dist

    def _cached(self, cell: Stack) -> dict:
        hit = self._cells.get(id(cell))
        return hit[1] if hit is not None and hit[0] is cell else self.vector(cell)

    def _plan(self, state: int) -> tuple[dict, dict]:
        """For cells in ``state``: unit edges (origin -> [(nt, rest)]) and deep items by nt.

        A kernel item ``(origin, j, rest)`` of ``goto(state, nt)`` with ``j == 1`` started in this very
        cell (an edge between nonterminals of one vector); with ``j >= 2`` it started ``j - 1`` cells lower
        (stored with ``j - 1``; ``j == 0`` marks the accepting state).
        """
        plan = self._plans.get(state)
        if plan is None:
            units: dict = {}
            deep: dict = {}
            for nt, dest in self.lr.gotos[state].items():
                deep[nt] = []
                if dest == self.lr.end_state:
                    deep[nt].append((None, 0, 0.0))
                for origin, j, rest in self._kernels[dest]:
                    if j == 1:
                        units.setdefault(origin, []).append((nt, rest))
                    else:
                        deep[nt].append((origin, j - 1, rest))
            plan = self._plans[state] = (units, deep)
        return plan


def _right_hand_sides(lr: LRTables, step: list[dict]) -> list[tuple]:
    """Each rule's right-hand side, read off the accessing symbols of the states a reduction pops."""
    access: list = [None] * len(lr.actions)
    preds: list[list[int]] = [[] for _ in lr.actions]
    for s, row in enumerate(step):
        for sym, dest in row.items():
            access[dest] = sym
            preds[dest].append(s)
    rhs: list = [None] * len(lr.rules)
    for s, row in enumerate(lr.actions):
        for kind, arg in row.values():
            if kind == SHIFT or rhs[arg] is not None:
                continue
            symbols, state = [], s
            for _ in range(lr.rules[arg][1]):
                symbols.append(access[state])
                state = preds[state][0] if preds[state] else state
            rhs[arg] = tuple(reversed(symbols))
    return [r if r is not None else () for r in rhs]


def _min_lengths(lr: LRTables, rhs: list[tuple], term_cost: list[float]) -> dict:
    """Cheapest derivation of each nonterminal, in bytes (Knuth 1977: Dijkstra over rules)."""
    occurrences: dict = {}  # nonterminal -> rules, once per occurrence in their right-hand side
    waiting, partial = [], []
    for r, symbols in enumerate(rhs):
        waiting.append(0)
        partial.append(0.0)
        for x in symbols:
            if _is_term(x):
                partial[r] += term_cost[x[1]]
            else:
                waiting[r] += 1
                occurrences.setdefault(x, []).append(r)
    heap = [(partial[r], lr.rules[r][0]) for r in range(len(rhs)) if waiting[r] == 0]
    heapq.heapify(heap)
    minlen: dict = {}
    while heap:
        cost, nt = heapq.heappop(heap)
        if nt in minlen:
            continue
        minlen[nt] = cost
        for r in occurrences.get(nt, ()):
            partial[r] += cost
            waiting[r] -= 1
            if waiting[r] == 0 and lr.rules[r][0] not in minlen:
                heapq.heappush(heap, (partial[r], lr.rules[r][0]))
    return minlen


def _suffix_costs(symbols: tuple, term_cost: list[float], minlen: dict) -> list[float]:
    """``out[j]``: the cost of ``symbols[j:]``."""
    out = [0.0] * (len(symbols) + 1)
    for j in range(len(symbols) - 1, -1, -1):
        x = symbols[j]
        out[j] = out[j + 1] + (term_cost[x[1]] if _is_term(x) else minlen.get(x, INF))
    return out


def _kernel_items(lr: LRTables, rhs: list[tuple], step: list[dict], rest: list, n_states: int) -> list:
    """Per state, its kernel items as (origin, dot position, cost of the rest), the cheapest of each kind."""
    by_origin: dict = {}
    for r, (origin, _) in enumerate(lr.rules):
        by_origin.setdefault(origin, []).append(r)
    best: list[dict] = [{} for _ in range(n_states)]
    for p in range(n_states):
        for nt in lr.gotos[p]:
            for r in by_origin.get(nt, ()):
                state = p
                for j, x in enumerate(rhs[r], start=1):
                    state = step[state].get(x)
                    if state is None:  # a shift lark resolved away: the item does not continue
                        break
                    key = (nt, j)
                    if rest[r][j] < best[state].get(key, INF):
                        best[state][key] = rest[r][j]
    return [[(nt, j, cost) for (nt, j), cost in table.items()] for table in best]


def _is_term(symbol) -> bool:
    return isinstance(symbol, tuple)
