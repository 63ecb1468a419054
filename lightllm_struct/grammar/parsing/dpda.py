"""The LR automaton run as a deterministic pushdown automaton with composite, prefix-conditioned edges.

A stack is an immutable cons list of cells ``(state, height, parent)`` (bottom height 0), so a matcher
keeps old stacks for free and rollback costs nothing. Feeding terminal ``t`` to a stack whose top is ``s``
follows the chain of reductions and the final shift as ONE composite edge (Pre³): it is keyed by
``(s, t)`` plus the exact stack prefix the chain reads, and says how many cells it pops and which states
it pushes. Edges (a shift's prefix is the top alone) are derived on first use from the LR tables and
memoised, so a step is a dict lookup plus a prefix match and
never a search: the prefix a chain reads is itself determined by the states read, so at most one
memoised edge of a key matches a stack.
"""
from __future__ import annotations

import threading

from lightllm_struct.grammar.parsing.lr import SHIFT, LRTables

Stack = tuple  # (state: int, height: int, parent: Stack | None)
ACCEPT = ("accept",)  # push sequence marking an accepted END


class Touch:
    """What an operation read of a stack: how deep, and how its heights compared with the depth limit.

    ``low`` is the lowest height read. ``hit_limit`` says some check against the depth limit failed
    (the result depends on the absolute height). ``peak`` is the largest height that a passing check
    required to fit (``peak <= max_stack_depth``): on a stack of other height with the same top cells,
    every check still passes, and so the result is the same, while ``height + (peak - old height)``
    still fits.
    """

    __slots__ = ("low", "hit_limit", "peak")

    def __init__(self, height: int) -> None:
        self.low = height
        self.hit_limit = False
        self.peak = 0

    def absorb(self, low: int, hit_limit: bool, peak: int) -> None:
        """Add what a nested (memoised) operation read."""
        if low < self.low:
            self.low = low
        if hit_limit:
            self.hit_limit = True
        if peak > self.peak:
            self.peak = peak


class DPDA:
    """Composite-edge transition function over LR stacks (thread-safe, memoising)."""

    def __init__(self, lr: LRTables, *, max_stack_depth: int = 1024, max_edges_per_key: int = 256) -> None:
        self.lr = lr
        self.max_stack_depth = max_stack_depth
        self._max_edges = max_edges_per_key
        # (top state, terminal) -> {prefix length: {prefix states: (pop, push)}}. Shift edges too are made on
        # first use: tabulating every one up front cost 26 MB (280,000 edges) for a tool of 250 parameters,
        # of which a generation reads a few dozen.
        self._edges: dict[tuple[int, int], dict[int, dict[tuple, tuple]]] = {}
        self._lock = threading.Lock()
        self.bottom: Stack = (lr.start_state, 0, None)

    def acceptable(self, state: int) -> list[int]:
        """Terminals with an action in LR state ``state`` (a superset of what the full stack accepts)."""
        return list(self.lr.actions[state])

    def advance(self, stack: Stack, term: int, touch: Touch | None = None) -> Stack | None:
        """The stack after shifting ``term`` (reductions included), or None if ``term`` is an error here."""
        edge = self._edge(stack, term, touch)
        if edge is None or edge[1] is ACCEPT:
            return None
        pop, push = edge
        for _ in range(pop):
            stack = stack[2]
        height = stack[1]
        if height + len(push) > self.max_stack_depth:
            if touch is not None:
                touch.hit_limit = True
            return None
        if touch is not None and height + len(push) > touch.peak:
            touch.peak = height + len(push)
        for state in push:
            height += 1
            stack = (state, height, stack)
        return stack

    def accepts_end(self, stack: Stack, touch: Touch | None = None) -> bool:
        """Whether the input so far is a complete sentence (END reduces the stack to acceptance)."""
        edge = self._edge(stack, self.lr.end, touch)
        return edge is not None and edge[1] is ACCEPT

    def _edge(self, stack: Stack, term: int, touch: Touch | None) -> tuple | None:
        by_len = self._edges.get((stack[0], term))
        if by_len is not None:
            for length, table in list(by_len.items()):
                prefix = _prefix(stack, length)
                if prefix is None:
                    continue
                edge = table.get(prefix)
                if edge is not None:
                    if touch is not None:
                        touch.low = min(touch.low, stack[1] - length + 1)
                    return edge
        depth, edge = self._derive(stack, term)
        if touch is not None:
            touch.low = min(touch.low, stack[1] - depth + 1)
        if edge is not None:
            self._remember(stack, term, depth, edge)
        return edge

    def _remember(self, stack: Stack, term: int, depth: int, edge: tuple) -> None:
        with self._lock:
            by_len = self._edges.setdefault((stack[0], term), {})
            table = by_len.setdefault(depth, {})
            if len(table) < self._max_edges:  # pathological grammars: derive instead of growing forever
                table[_prefix(stack, depth)] = edge

    def _derive(self, stack: Stack, term: int) -> tuple[int, tuple | None]:
        """Run the reductions for ``term``: (cells read, (pop, push) or None on error)."""
        actions, gotos, rules = self.lr.actions, self.lr.gotos, self.lr.rules
        pushed: list[int] = []
        cell, popped = stack, 0
        while True:
            top = pushed[-1] if pushed else cell[0]
            act = actions[top].get(term)
            if act is None:
                return popped + 1, None
            kind, arg = act
            if kind == SHIFT:
                pushed.append(arg)
                return popped + 1, (popped, tuple(pushed))
            origin, length = rules[arg]
            from_pushed = min(length, len(pushed))
            del pushed[len(pushed) - from_pushed:]
            for _ in range(length - from_pushed):
                cell = cell[2]
                popped += 1
                if cell is None:
                    return popped, None
            top = pushed[-1] if pushed else cell[0]
            pushed.append(gotos[top][origin])
            if term == self.lr.end and pushed[-1] == self.lr.end_state:
                return popped + 1, (popped, ACCEPT)


MISS = object()  # StackMemo.get: nothing cached (None is a valid cached result)


class StackMemo:
    """Results computed from stacks, each keyed by exactly what its computation read (thread-safe, bounded).

    A result computed under a :class:`Touch` depends only on the top ``depth`` states, unless a check
    against the depth limit failed (then also on the height) or the read reached the bottom cell. Entries
    are keyed by ``key``, then by the top ``depth`` states (and the height); the depths seen for a key are
    its *shapes*, tried in turn on lookup (at most ``max_shapes``: pathological grammars compute instead).
    A hit adds the recorded reads to the caller's touch, so memoised steps compose into exact outer
    memos. When ``capacity`` entries are reached the memo starts afresh (lookups need no lock, no LRU).
    """

    def __init__(self, max_stack_depth: int, *, capacity: int, max_shapes: int = 8) -> None:
        self._max_depth = max_stack_depth
        self._capacity = capacity
        self._max_shapes = max_shapes
        # key -> ((depth, exact, {states | (height, states): (peak - height, hit_limit, result)}), ...);
        # the tuple is replaced, never mutated, so lookups iterate it without the lock
        self._tables: dict = {}
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def get(self, key, stack: Stack, touch: Touch | None = None):
        """The memoised result for ``stack``, or :data:`MISS`."""
        height = stack[1]
        for depth, exact, table in self._tables.get(key, ()):
            states = _prefix(stack, depth)
            hit = table.get((height, states) if exact else states)
            if hit is not None and height + hit[0] <= self._max_depth:
                if touch is not None:
                    touch.absorb(height - depth + 1, hit[1], height + hit[0])
                return hit[2]
        return MISS

    def put(self, key, stack: Stack, touch: Touch, result) -> None:
        """Remember ``result``, computed from ``stack`` under ``touch`` (a Touch of its own)."""
        height = stack[1]
        depth = height - touch.low + 1
        exact = touch.hit_limit or touch.low <= 0  # the bottom read: "nothing below" is part of the input
        states = _prefix(stack, depth)
        entry = (touch.peak - height, touch.hit_limit, result)
        with self._lock:
            if self._size >= self._capacity:
                self._tables, self._size = {}, 0
            shapes = self._tables.get(key, ())
            table = next((t for d, e, t in shapes if d == depth and e == exact), None)
            if table is None:
                if len(shapes) >= self._max_shapes:
                    return
                table = {}
                self._tables[key] = shapes + ((depth, exact, table),)
            table[(height, states) if exact else states] = entry
            self._size += 1


def _prefix(stack: Stack | None, length: int) -> tuple | None:
    out = []
    for _ in range(length):
        if stack is None:
            return None
        out.append(stack[0])
        stack = stack[2]
    return tuple(out)


def stack_states(stack: Stack | None) -> list[int]:
    """States of a stack from the top down (for debugging and tests)."""
    out = []
    while stack is not None:
        out.append(stack[0])
        stack = stack[2]
    return out
