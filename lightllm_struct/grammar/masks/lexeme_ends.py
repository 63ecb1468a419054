"""The lexeme ends of many lexer states at once: the per-end-state half of the budget check, compiled.

A token scan (``token_ends.py``) leaves the text tokens of a string ending in tens to hundreds of lexer
states (UTF-8 prefixes, escapes, the counters of a bounded string); the budget check needs each one's
lexeme ends (``FinishDistance.lexeme_ends``: the fewest bytes to a state that ends the lexeme as each terminal,
a breadth-first search of the lexer), about 0.3 ms each in Python and numpy. :class:`LexemeEnds` runs the
same search compiled, level by level with the same stopping rules (as many terminals found as the state has
alive, or more than ``finish._SEARCH_STATES`` states seen, checked before each level), so the results are the
same tuples (``tests/grammar/masks/test_lexeme_ends.py``). Lazy lexers keep the Python search (their rows are
made as a search reaches them).
"""
from __future__ import annotations

import numpy as np

from lightllm_struct.grammar.finish import _SEARCH_STATES
from lightllm_struct.grammar.lexing.lexer import UnionLexer
from lightllm_struct.grammar.masks.scan_jit import AVAILABLE, njit


def _search(table, accept, q, usable, wanted, max_seen, found):  # pragma: no cover - compiled by numba
    """Breadth-first from ``q``: ``found[term]`` = the first depth at which a state (other than 0) ends the
    lexeme as ``term`` (all -1 beforehand). Returns the number of terminals found."""
    n = accept.shape[0]
    seen = np.zeros(n, np.bool_)
    seen[q] = True
    n_seen = 1
    frontier = np.empty(n, np.int64)
    nxt = np.empty(n, np.int64)
    frontier[0] = q
    width = 1
    depth = 0
    n_found = 0
    while width > 0 and n_found < wanted and n_seen <= max_seen:
        for i in range(width):
            term = accept[frontier[i]]
            if term >= 0 and found[term] < 0 and frontier[i] != 0:
                found[term] = depth
                n_found += 1
        count = 0
        for i in range(width):
            base = frontier[i] * 256
            for b in usable:
                t = table[base + b]
                if t >= 0 and not seen[t]:
                    seen[t] = True
                    nxt[count] = t
                    count += 1
        n_seen += count
        frontier, nxt = nxt, frontier
        width = count
        depth += 1
    return n_found


if AVAILABLE:
    _search = njit(nogil=True, cache=True)(_search)


def warm_up() -> None:
    """Load (or compile) the search now, with the real argument types, not inside a timed mask."""
    if AVAILABLE:
        _search(np.full(512, -1, np.int64), np.full(1, -1, np.int32), 0, np.arange(256, dtype=np.int64), 1, 1,
                np.full(1, -1, np.int64))


_CACHE_SIZE = 1 << 15  # states kept (then start afresh), as FinishDistance keeps its own


class LexemeEnds:
    """``FinishDistance.lexeme_ends`` of one grammar, the searches of eager lexers compiled (thread-safe: a
    memo table only).

    Parameters
    ----------
    dist:
        The grammar's ``FinishDistance`` (lazy lexers' searches, in Python).
    tok:
        Its ``TokenizerInfo``: the search steps only through bytes that are single-byte tokens, as
        ``FinishDistance`` does.
    """

    def __init__(self, dist, tok) -> None:
        self._dist = dist
        self._usable = np.arange(256, dtype=np.int64) if tok.every_byte_a_token else \
            np.array(tok.single_bytes, dtype=np.int64)
        self._ends: dict[tuple, tuple] = {}

    def of(self, lexer, q: int) -> tuple:
        """``(bytes, terminal)`` for each terminal the lexeme at ``q`` can still end as, nearest first."""
        if not AVAILABLE or not isinstance(lexer, UnionLexer):
            return self._dist.lexeme_ends(lexer, q)
        key = (lexer.uid, q)
        got = self._ends.get(key)
        if got is None:
            found = np.full(int(lexer.accept.max(initial=-1)) + 1, -1, dtype=np.int64)
            _search(lexer.sink_table, lexer.accept, int(q), self._usable, len(set(lexer.alive_terms[q])),
                              _SEARCH_STATES, found)
            terms = np.flatnonzero(found >= 0).tolist()
            got = tuple(sorted((int(found[t]), t) for t in terms))
            if len(self._ends) >= _CACHE_SIZE:
                self._ends = {}
            self._ends[key] = got
        return got
