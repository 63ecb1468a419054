"""Shortest finish of a matcher configuration: the fewest bytes after which the output is a whole sentence.

A configuration ``(stack, lexer, q)`` finishes by completing the current lexeme as some terminal ``t``
(the fewest bytes from lexer state ``q`` to a state the lexer ends as ``t``: a breadth-first search of
the product lexer, memoised per state) and then completing the stack after ``t``
(``parsing/distance.py``). Finishes are spelt byte by byte, so ``d`` bytes are at most ``d`` tokens: budget-
aware masks (``masks/budget.py``) compare these distances with the tokens a request has left. Where some
byte has no single-byte token (the default model's vocabulary lacks a few control bytes and two UTF-8
lead bytes), the searches step only through bytes that have one: the finish found is then longest or
equal, but every byte of it is a token, so the bound in tokens stays true.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from lightllm_struct.grammar.lexing.lexer import UnionLexer
from lightllm_struct.grammar.parsing.distance import INF, StackDistance

_SEARCH_STATES = 1 << 14  # lexer states one search visits at most (lazy lexers make states as it goes)
_CACHE_SIZE = 1 << 15


class FinishDistance:
    """Shortest finishes of one compiled grammar's configurations (thread-safe: memo tables only).

    Parameters
    ----------
    grammar:
        The :class:`~lightllm_struct.grammar.compiled.CompiledGrammar`.
    """

    def __init__(self, grammar) -> None:
        self.grammar = grammar
        tok = grammar.tokenizer
        self._usable = None if tok.every_byte_a_token else np.array(tok.single_bytes, dtype=np.int64)
        self.stack = StackDistance(grammar.lr, [_shortest_lexeme(d, self._usable) for d in grammar.dfas] + [INF])
        self._any = None
        self._ends: dict[tuple, tuple] = {}  # (lexer uid, q) -> ((bytes, terminal), ...) by bytes
        self._after: dict[tuple, tuple] = {}  # (id(stack), terminal) -> (stack, distance after it)

    @property
    def start(self) -> float:
        """Bytes of the shortest sentence (the distance at the start)."""
        return self.of(self.grammar.initial_config())

    @property
    def start_any(self) -> float:
        """Bytes of the shortest sentence through any bytes (``start`` spells it in single-byte tokens)."""
        if self._usable is None:
            return self.start
        if self._any is None:
            self._any = StackDistance(self.grammar.lr, [_shortest_lexeme(d, None) for d in self.grammar.dfas] + [INF])
        return self._any.start_cost

    def of(self, config) -> float:
        """Fewest bytes after which ``config`` is complete (0 when it is; ``INF`` when it cannot be)."""
        if self.grammar.is_complete(config):
            return 0.0
        stack, lexer, q = config
        if q == 0:
            return max(self.stack.of(stack), 1.0)
        return max(self.in_lexeme(stack, lexer, q), 1.0)

    def in_lexeme(self, stack, lexer, q: int) -> float:
        """The shortest finish from lexer state ``q > 0``: end the lexeme as some terminal, then the stack."""
        best = INF
        for length, term in self.lexeme_ends(lexer, q):
            if length >= best:
                break
            best = min(best, length + self.after_terminal(stack, term))
        return best

    def after_terminal(self, stack, term: int) -> float:
        """The stack's shortest completion once terminal ``term`` ends on it."""
        key = (id(stack), term)
        hit = self._after.get(key)
        if hit is not None and hit[0] is stack:
            return hit[1]
        after = self.grammar.end_terminal(stack, term)
        value = INF if after is None else self.stack.of(after)
        if len(self._after) >= _CACHE_SIZE:
            self._after = {}
        self._after[key] = (stack, value)
        return value

    def lexeme_ends(self, lexer, q: int) -> tuple:
        """``(bytes, terminal)`` for each terminal the lexeme at ``q`` can still end as, nearest first."""
        key = (lexer.uid, q)
        got = self._ends.get(key)
        if got is None:
            got = _lexeme_ends(lexer, q, self._usable)
            if len(self._ends) >= _CACHE_SIZE:
                self._ends = {}
            self._ends[key] = got
        return got


def _lexeme_ends(lexer, q: int, usable: np.ndarray | None) -> tuple:
    """Breadth-first from ``q``: the first depth at which the lexer ends the lexeme as each terminal."""
    wanted = set(lexer.alive_terms[q])
    found: dict[int, int] = {}
    seen = {q}
    frontier, depth = [q], 0
    while frontier and len(found) < len(wanted) and len(seen) <= _SEARCH_STATES:
        for s in frontier:
            term = lexer.accept_list[s]
            if term >= 0 and term not in found and s != 0:
                found[term] = depth
        frontier, depth = _successors(lexer, frontier, seen, usable), depth + 1
    return tuple(sorted((d, t) for t, d in found.items()))


def _successors(lexer, states: list[int], seen: set, usable: np.ndarray | None) -> list[int]:
    """States one byte (of ``usable``; None: any) after ``states`` not in ``seen`` (which they join)."""
    if isinstance(lexer, UnionLexer):
        table = lexer.table[states]
        targets = np.unique(table if usable is None else table[:, usable]).tolist()
    elif usable is None:  # lazy lexers: exact rows, made on demand
        targets = {t for s in states for t in lexer.rows[s]}
    else:
        targets = {t for s in states for t in np.asarray(lexer.rows[s])[usable].tolist()}
    out = [t for t in targets if t >= 0 and t not in seen]
    seen.update(out)
    return out


def _shortest_lexeme(dfa, usable: np.ndarray | None) -> float:
    """Bytes of the shortest non-empty string of ``usable`` bytes (None: any) ``dfa`` accepts (``INF`` if
    none within the search bound)."""
    if hasattr(dfa, "table"):
        succ = lambda s: set((dfa.table[s] if usable is None else dfa.table[s][usable]).tolist())  # noqa: E731
        accepting = lambda s: bool(dfa.accepting[s])  # noqa: E731
    elif usable is None:
        succ, accepting = dfa.successors, dfa.is_accepting
    else:
        succ = lambda s: set(np.asarray(dfa.row(s))[usable].tolist())  # noqa: E731
        accepting = dfa.is_accepting
    queue = deque([(0, 0)])
    seen = {0}
    while queue and len(seen) <= _SEARCH_STATES * 8:
        s, depth = queue.popleft()
        if depth and accepting(s):
            return float(depth)
        for t in succ(s):
            if t >= 0 and t not in seen:
                seen.add(t)
                queue.append((t, depth + 1))
    return INF
