"""The rules of one object: a finite-state walk over its members in schema order.

Each member (a declared, required or condition-named key) is decided in turn: written or skipped. A state is
(next member, properties written so far, presence of the earlier keys that a pending condition still needs):

- the count, capped at what ``minProperties``/``maxProperties`` can tell apart, makes both exact (undeclared
  keys count too);
- a presence condition (presence.py: ``dependentRequired``, presence-only ``dependentSchemas``, ``anyOf``,
  ``if``...) is evaluated as soon as its last key is decided, and a path that fails it is cut; its keys are
  remembered only until then.

Two rule chains per state: ``x`` (undeclared keys may come here, in a loop) and ``y`` (member i next, or
skipped). Only states that can still end in a valid object are written, so every rule derives something and
every prefix the grammar takes extends to a valid object. Without conditions and counts there are 2(n+1)
states, as many as the plain chain had; the number of states is bounded (refused beyond, by pointer).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import Piece
from lightllm_struct.grammar.json_schema.presence import Formula, evaluate, keys_of

if TYPE_CHECKING:
    from lightllm_struct.grammar.json_schema.converter import Converter

MAX_OBJECT_STATES = 4096

# (member index, count, remembered members: index -> the class written, -1 when skipped)
State = tuple[int, int, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class Member:
    key: str
    piece: Piece
    required: bool
    # a value tested by conditions: disjoint classes (piece, keys of the value sets it lies in); None: one class
    classes: tuple[tuple[Piece, frozenset[str]], ...] | None = None

    def options(self) -> tuple[tuple[Piece, frozenset[str]], ...]:
        if self.classes is not None:
            return self.classes
        return ((self.piece, frozenset()),) if self.piece.sym is not None else ()


@dataclass(frozen=True)
class Counts:
    lo: int = 0
    hi: int | None = None


def object_rules(conv: Converter, members: list[Member], extras: list[tuple[str, str]], *,
                 conditions: list[Formula], counts: Counts, lead_required: bool, pointer: str) -> str | None:
    """The object's start rule, or None when no object satisfies everything.

    Raises
    ------
    UnsupportedSchemaFeature : more than MAX_OBJECT_STATES states (at ``pointer``).
    """
    walk = _Walk(members, extras, conditions, counts, lead_required)
    walk.explore(pointer)
    if not walk.alive_x(walk.start):
        return None
    return walk.emit(conv)


class _Walk:
    def __init__(self, members: list[Member], extras: list[tuple[str, str]], conditions: list[Formula],
                 counts: Counts, lead_required: bool) -> None:
        self.members, self.extras, self.counts, self.lead_required = members, extras, counts, lead_required
        n = len(members)
        self.n = n
        index = {m.key: i for i, m in enumerate(members)}
        # every condition's keys are members (objects.py adds them); its variables as member indices
        self.conds = [(f, sorted({index[k] for k in keys_of(f)})) for f in conditions]
        self.ending: list[list[int]] = [[] for _ in range(n + 1)]
        self.until: dict[int, int] = {}  # member -> the last member of a condition naming it
        for c, (_f, idx) in enumerate(self.conds):
            if idx:
                self.ending[idx[-1]].append(c)
            for k in idx:
                self.until[k] = max(self.until.get(k, -1), idx[-1])
        self.constant_ok = all(evaluate(f, {}) for f, idx in self.conds if not idx)
        cap = counts.hi if counts.hi is not None else max(counts.lo, 1)
        self.cap = cap
        self.start: State = (0, 0, ())
        self.x_next: dict[State, State | None] = {}
        self.y_next: dict[State, tuple[list[State | None], State | None]] = {}
        self._alive_x: dict[State, bool] = {}
        self._alive_y: dict[State, bool] = {}

    # -- transitions ------------------------------------------------------------------------------
    def _bump(self, c: int) -> int | None:
        if self.counts.hi is not None:
            return c + 1 if c < self.counts.hi else None
        return min(c + 1, self.cap)

    def _extra(self, s: State) -> State | None:
        i, c, mem = s
        if not self.extras or self.lead_required and c == 0:
            return None
        c2 = self._bump(c)
        return None if c2 is None else (i, c2, mem)

    def _decide(self, s: State, written: int) -> State | None:
        """The state after member i is written with its class ``written`` (-1: skipped)."""
        i, c, mem = s
        m = self.members[i]
        if written >= 0:
            c2 = self._bump(c)
            if c2 is None:
                return None
        else:
            if m.required:
                return None
            c2 = c
        known = dict(mem)
        known[i] = written
        for ci in self.ending[i]:
            f, idx = self.conds[ci]
            env = {self.members[k].key: None if known[k] < 0 else self.members[k].options()[known[k]][1] for k in idx}
            if not evaluate(f, env):
                return None
        kept = tuple(sorted((k, v) for k, v in known.items() if self.until.get(k, -1) > i))
        return (i + 1, c2, kept)

    def explore(self, pointer: str) -> None:
        todo = [self.start]
        seen = {self.start}
        while todo:
            s = todo.pop()
            nxt = [self._extra(s)]
            self.x_next[s] = nxt[0]
            if s[0] < self.n:
                wrote = [self._decide(s, j) for j in range(len(self.members[s[0]].options()))]
                skipped = self._decide(s, -1)
                self.y_next[s] = (wrote, skipped)
                nxt += [*wrote, skipped]
            for t in nxt:
                if t is not None and t not in seen:
                    seen.add(t)
                    todo.append(t)
                    if len(seen) > MAX_OBJECT_STATES:
                        raise UnsupportedSchemaFeature(
                            f"the object's key conditions and property counts need more than {MAX_OBJECT_STATES} "
                            "grammar states", pointer=pointer)
        # aliveness, from the last member back: transitions go to a later member or a higher count
        for s in sorted(seen, key=lambda s: (-s[0], -s[1])):
            i, c, _mem = s
            if i == self.n:
                y = self.constant_ok and c >= self.counts.lo
            else:
                wrote, skipped = self.y_next[s]
                y = any(t is not None and self._alive_x[t] for t in wrote) or \
                    skipped is not None and self._alive_y[skipped]
            self._alive_y[s] = y
            t = self.x_next[s]
            self._alive_x[s] = y or (t is not None and t != s and self._alive_x[t])

    def alive_x(self, s: State) -> bool:
        return self._alive_x.get(s, False)

    # -- rules ------------------------------------------------------------------------------------
    def emit(self, conv: Converter) -> str:
        b = conv.builder
        prefix = b.new_rule("obj")
        ids: dict[State, int] = {}
        todo: list[tuple[str, State]] = []
        made: set[tuple[str, State]] = set()

        def ref(kind: str, s: State) -> str:
            if (kind, s) not in made:
                made.add((kind, s))
                todo.append((kind, s))
            return f"{prefix}_{kind}{ids.setdefault(s, len(ids))}"

        start = ref("x", self.start)
        while todo:
            kind, s = todo.pop()
            comma = f"{b.comma} " if s[1] > 0 else ""
            alts = []
            if kind == "x":
                t = self.x_next[s]
                if t is not None and self._alive_x[t]:
                    alts += [f"{comma}{term} {b.colon} {value} {ref('x', t)}" for term, value in self.extras]
                if self._alive_y[s]:
                    alts.append(ref("y", s))
            elif s[0] == self.n:
                alts.append("")
            else:
                wrote, skipped = self.y_next[s]
                m = self.members[s[0]]
                for t, (piece, _inside) in zip(wrote, m.options()):
                    if t is not None and self._alive_x[t]:
                        alts.append(f"{comma}{b.terminal(b.literal(m.key))} {b.colon} {piece.sym} {ref('x', t)}")
                if skipped is not None and self._alive_y[skipped]:
                    alts.append(ref("y", skipped))
            b.set_rule(f"{prefix}_{kind}{ids[s]}", alts)
        return b.rule("object", [f"{b.lbrace} {start} {b.rbrace}"])
