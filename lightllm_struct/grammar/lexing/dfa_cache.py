"""Terminal DFAs shared by every grammar of the process, and the overlap test between two terminals.

Schemas repeat the same terminal regexes (strings, numbers, formats, keys); a terminal's DFA is immutable and
vocabulary-independent, so one bounded LRU serves every compiler and the JSON-schema frontend's overlap
check (which then builds, once, the very DFAs the compiler uses next).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lightllm_struct.grammar.cache import LRU
from lightllm_struct.grammar.deadline import NO_DEADLINE, Deadline
from lightllm_struct.grammar.errors import RegexError
from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA, literal_dfa
from lightllm_struct.grammar.lexing.lazy_dfa import LazyDFA
from lightllm_struct.grammar.lexing.lexer import LAZY_STATES_FACTOR
from lightllm_struct.grammar.lexing.regex_dfa import lazy_regex_dfa, regex_dfa, wants_lazy


def dfa_nbytes(dfa: ByteDFA | LazyDFA) -> int:
    """Estimated bytes of a cached DFA: an eager one's table (plus its flags and classes), a lazy one's made
    states (their subsets and rows) as of now."""
    table = getattr(dfa, "table", None)
    if isinstance(table, np.ndarray):
        return table.nbytes * 6 // 5
    return 1500 * dfa.num_states


# Bounded in bytes too: one DFA of 20,000 states is 20 MB, and a worker compiling user schemas all day would
# otherwise keep 1,024 of the largest it met (a lazy DFA is measured as inserted: it grows a little after).
_CACHE: LRU = LRU(1024, max_bytes=128 << 20, size_of=dfa_nbytes)
# pattern -> make(max_states=, deadline=): terminals whose DFA a frontend builds from what the regex was written
# from (an object's "any other key" from its key list), never through the regex. Bounded like _CACHE; an
# evicted entry only sends its pattern down the regex path, to the same DFA.
_MAKERS: LRU = LRU(1024)
# Bytes from its start within which a lazy DFA is made at once: a tame counted repeat has a few states a
# byte there, an explosive regex ((a|b)*a(a|b){100}) thousands, refused now, not mid-generation.
_EXPLORE_BYTES = 16


def terminal_dfa(pattern: str, literal: str | None, *, max_states: int,
                 deadline: Deadline = NO_DEADLINE) -> ByteDFA | LazyDFA:
    """The DFA of a terminal: one a frontend provides (``provide``), a literal's, a regex's minimal eager
    DFA, or a lazy one for long counted repeats (``maxLength: 2000``), whose states within 16 bytes of its
    start are made now (that bounds explosive regexes here and leaves the first masks little to do).

    Raises
    ------
    RegexError, GrammarTooComplex, CompileTimeout
    """
    key = (pattern, literal, max_states)
    dfa = _CACHE.get(key)
    if dfa is not None:
        return dfa
    make = _MAKERS.get(pattern) if literal is None else None
    if make is not None:
        dfa = make(max_states=max_states, deadline=deadline)
    elif literal is not None:
        dfa = literal_dfa(literal.encode("utf-8"))
    elif not wants_lazy(pattern):
        dfa = regex_dfa(pattern, max_states=max_states, deadline=deadline)
    else:
        dfa = lazy_regex_dfa(pattern, max_states=max_states * LAZY_STATES_FACTOR, unit_max_states=max_states,
                             deadline=deadline)
        dfa.explore(_EXPLORE_BYTES, limit=max_states // 4, deadline=deadline)
    _CACHE.put(key, dfa)
    return dfa


def provide(pattern: str, make: Callable[..., ByteDFA]) -> None:
    """Let ``terminal_dfa(pattern, None, ...)`` build its DFA as ``make(max_states=, deadline=)``, which must
    accept exactly the byte strings that fully match ``pattern`` (and raise what regex_dfa would)."""
    _MAKERS.put(pattern, make)


def dfas_intersect(a: ByteDFA | LazyDFA, b: ByteDFA | LazyDFA, *, limit: int = 200_000,
                   deadline: Deadline = NO_DEADLINE) -> bool:
    """Whether some byte string is accepted by both (the reachable part of the product, explored). Lazily
    built DFAs have their rows made as the product reaches them, under their own state bound.

    Raises
    ------
    RegexError
        The product has more than ``limit`` reachable pairs (the caller decides another way).
    GrammarTooComplex
        A lazy DFA past its state bound.
    """
    seen = {(0, 0)}
    todo = [(0, 0)]
    while todo:
        p, q = todo.pop()
        if _accepting(a, p) and _accepting(b, q):
            return True
        ra, rb = _row(a, p), _row(b, q)
        both = (ra >= 0) & (rb >= 0)
        for pair in zip(ra[both].tolist(), rb[both].tolist()):
            if pair not in seen:
                if len(seen) >= limit:
                    raise RegexError("terminal product too large to explore")
                seen.add(pair)
                todo.append(pair)
        if len(seen) % 256 == 0:
            deadline.check()
    return False


def _row(dfa: ByteDFA | LazyDFA, state: int) -> np.ndarray:
    return dfa.row(state) if isinstance(dfa, LazyDFA) else dfa.table[state]


def _accepting(dfa: ByteDFA | LazyDFA, state: int) -> bool:
    return dfa.is_accepting(state) if isinstance(dfa, LazyDFA) else bool(dfa.accepting[state])


def first_bytes(dfa: ByteDFA) -> int:
    """Bit set of the bytes a non-empty match can start with."""
    return dfa.memo("first_bytes", lambda: sum(1 << int(b) for b in np.flatnonzero(dfa.table[0] >= 0)))
