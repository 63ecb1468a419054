"""Python regex syntax -> byte-level NFA, from the standard library's own regex parser.

``re._parser`` gives exactly Python's syntax; every character set becomes the UTF-8 byte-range
sequences of its code points, so the automaton works on bytes (tokens split characters). Everything is
bounded: node counts are limited and the deadline is checked while building. Semantics: full match;
lazy quantifiers match the same language as greedy ones; ``\\d`` and ``\\w`` are ASCII (as in
JSON Schema's ECMA-262 regexes), ``\\s`` is Unicode whitespace; anchors, look-around,
back-references, possessive and atomic groups are refused.
"""
from __future__ import annotations

import functools

import re
from collections.abc import Callable

try:  # Python >= 3.11
    import re._constants as C
    import re._parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_constants as C
    import sre_parse

from lightllm_struct.grammar.lexing.byte_nfa import ByteNFA, RepeatCopies, RECORD_MIN_COPIES
from lightllm_struct.grammar.deadline import Deadline
from lightllm_struct.grammar.errors import GrammarTooComplex, RegexError
from lightllm_struct.grammar.lexing.utf8 import MAX_CODE_POINT, code_point_ranges, complement_ranges

# Plain ints: ``int & re.RegexFlag`` builds a RegexFlag through enum machinery (about 1.6 µs), and every
# character set of every regex tests the flags.
_DOTALL, _IGNORECASE = int(re.DOTALL), int(re.IGNORECASE)

__all__ = ["ByteNFA", "RepeatCopies", "UNICODE_SPACE", "build_nfa", "parse_regex"]

_ASCII_CATEGORIES = {
    C.CATEGORY_DIGIT: [(0x30, 0x39)],
    C.CATEGORY_WORD: [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
}


# Python's str.isspace() code points (tests check this list against it).
UNICODE_SPACE = ((0x09, 0x0D), (0x1C, 0x20), (0x85, 0x85), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
                 (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000))


def _category(cat) -> list[tuple[int, int]]:
    negated = {C.CATEGORY_NOT_DIGIT: C.CATEGORY_DIGIT, C.CATEGORY_NOT_WORD: C.CATEGORY_WORD,
               C.CATEGORY_NOT_SPACE: C.CATEGORY_SPACE}
    if cat in negated:
        return complement_ranges(_category(negated[cat]))
    if cat == C.CATEGORY_SPACE:
        return list(UNICODE_SPACE)
    if cat in _ASCII_CATEGORIES:
        return list(_ASCII_CATEGORIES[cat])
    raise RegexError(f"unsupported character category {cat}")


@functools.lru_cache(maxsize=64)
def parse_regex(pattern: str) -> tuple:
    """Python's parse of ``pattern`` and its flags; read-only for callers (cached: deciding whether a regex
    is lazy and building its NFA both read it, and Python's parser is the slow part of both)."""
    try:
        parsed = sre_parse.parse(pattern, 0)
    except (re.error, OverflowError, RecursionError) as exc:
        raise RegexError(f"cannot compile regex {pattern!r}: {exc}") from exc
    return parsed, int(parsed.state.flags)


# Counted repeats with at least this many copies get each copy as the unit's minimal DFA (see repeat).
_DFA_UNIT_MIN_COPIES = 4
_DFA_UNIT_MIN_COPIES_SET = 16  # the same for a unit that is a single character set
_VIRTUAL_MIN_COPIES = 64  # optional copies from which a virtual NFA reserves instead of copying
_CHAR_OPS = (C.LITERAL, C.NOT_LITERAL, C.ANY, C.IN, C.CATEGORY)


def build_nfa(pattern: str, *, max_nodes: int, deadline: Deadline, unit_dfa: Callable | None = None,
              virtual: bool = False) -> tuple[ByteNFA, int, int]:
    """Thompson construction: (nfa, start node, accepting node).

    ``unit_dfa(nfa, start, end) -> (table, accepting)``, when given, turns the NFA of a counted repeat's
    unit into its minimal DFA (state 0 initial, -1 dead), which is then copied instead of the Thompson
    fragment. ``virtual``: see :class:`ByteNFA` (read such an NFA through ``edges_of``/``eps_of``).
    """
    parsed, flags = parse_regex(pattern)
    nfa = ByteNFA(max_nodes, deadline, virtual=virtual)
    try:
        start, end = _Builder(nfa, pattern, unit_dfa).seq(list(parsed), flags)
    except RecursionError as exc:
        raise GrammarTooComplex(f"regex {pattern!r} nests too deeply") from exc
    return nfa, start, end


class _Builder:
    def __init__(self, nfa: ByteNFA, pattern: str, unit_dfa: Callable | None = None) -> None:
        self.nfa, self.pattern, self.unit_dfa = nfa, pattern, unit_dfa

    def unsupported(self, what: str) -> RegexError:
        return RegexError(f"cannot compile regex {self.pattern!r}: {what} is not supported")

    def seq(self, items: list, flags: int) -> tuple[int, int]:
        start = cur = self.nfa.node()
        for op, av in items:
            s, e = self.item(op, av, flags)
            self.nfa.eps[cur].append(s)
            cur = e
        return start, cur

    def item(self, op, av, flags: int) -> tuple[int, int]:
        if op in _CHAR_OPS:
            return self.nfa.char_set(self.char_ranges(op, av, flags))
        if op == C.BRANCH:
            start, end = self.nfa.node(), self.nfa.node()
            for alt in av[1]:
                s, e = self.seq(list(alt), flags)
                self.nfa.eps[start].append(s)
                self.nfa.eps[e].append(end)
            return start, end
        if op == C.SUBPATTERN:
            _, add, remove, sub = av
            return self.seq(list(sub), (flags | add) & ~remove)
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):
            return self.repeat(av, flags)
        names = {C.AT: "an anchor", C.GROUPREF: "a back-reference", C.ASSERT: "look-around",
                 C.ASSERT_NOT: "look-around", C.GROUPREF_EXISTS: "a conditional group"}
        raise self.unsupported(names.get(op, str(op).lower().replace("_", " ")))

    def repeat(self, av, flags: int) -> tuple[int, int]:
        lo, hi, sub = av
        copies = lo + 1 if hi == C.MAXREPEAT else hi
        # a lone character set is already DFA-shaped: only long repeats gain from merging its tails
        lone_set = len(sub) == 1 and sub[0][0] in _CHAR_OPS
        as_dfa = copies >= (_DFA_UNIT_MIN_COPIES_SET if lone_set else _DFA_UNIT_MIN_COPIES)
        unit = self.unit_copies(list(sub), flags, as_dfa=as_dfa)
        start = cur = self.nfa.node()
        for _ in range(lo):
            s, e = unit()
            self.nfa.eps[cur].append(s)
            cur = e
        if hi == C.MAXREPEAT:
            s, e = unit()
            self.nfa.eps[cur].append(s)
            self.nfa.eps[e].append(cur)  # loop back: zero or more further copies
            return start, cur
        end = self.nfa.node()
        self.nfa.eps[cur].append(end)
        first = len(self.nfa.edges)
        if self.nfa.virtual and hi - lo >= _VIRTUAL_MIN_COPIES:
            return start, self.virtual_copies(unit, cur, end, hi - lo)
        for _ in range(hi - lo):
            s, e = unit()
            self.nfa.eps[cur].append(s)
            self.nfa.eps[e].append(end)
            cur = e
        size, rest = divmod(len(self.nfa.edges) - first, max(hi - lo, 1))
        if hi - lo >= RECORD_MIN_COPIES and size and not rest:
            self.nfa.repeats.append(RepeatCopies(first, size, hi - lo))
        return start, end

    def virtual_copies(self, unit, cur: int, end: int, copies: int) -> int:
        """The optional copies of a repeat as one real copy plus reserved, shifted ones; returns ``end``."""
        first = len(self.nfa.edges)
        s, e = unit()
        size = len(self.nfa.edges) - first
        if self.nfa.has_virtual(first, first + size):  # nested big repeats: copy for real
            self.nfa.materialize(first, first + size)
        self.nfa.eps[cur].append(s)
        self.nfa.eps[e] += [end, s + size]
        self.nfa.reserve_copies(first, size, copies)
        self.nfa.repeats.append(RepeatCopies(first, size, copies))
        return end

    def unit_copies(self, items: list, flags: int, *, as_dfa: bool):
        """A function returning a fresh ``(start, end)`` fragment of ``items`` per call.

        The first call builds the fragment; later calls copy it as it was built (before the caller
        linked it to anything), far cheaper than walking the regex tree again. With ``as_dfa`` the
        fragment is the unit's minimal DFA: a long counted repeat (a JSON string's ``maxLength``) then
        determinizes into about (minimal unit states) x (count) states instead of several times that,
        the redundant Thompson paths (``\\u`` escape variants, ...) being merged once in the unit.
        """
        template: list = []

        def make() -> tuple[int, int]:
            if not template:
                base = len(self.nfa.edges)
                s, e = self.dfa_fragment(items, flags) if as_dfa and self.unit_dfa else self.seq(items, flags)
                top = len(self.nfa.edges)
                self.nfa.materialize(base, top)  # copies copy edges, never reservations
                template.append((base, top, s, e, [list(x) for x in self.nfa.edges[base:top]],
                                 [list(x) for x in self.nfa.eps[base:top]]))
                return s, e
            base, top, s, e, edges, eps = template[0]
            off = self.nfa.copy_of(base, edges, eps)
            return s + off, e + off

        return make

    def dfa_fragment(self, items: list, flags: int) -> tuple[int, int]:
        """``items`` as a fragment shaped like its minimal DFA: one node per state, plus start and end."""
        sub = ByteNFA(self.nfa._max_nodes, self.nfa._deadline)
        s, e = _Builder(sub, self.pattern, self.unit_dfa).seq(items, flags)
        table, accepting = self.unit_dfa(sub, s, e)
        if not accepting.any():  # a unit that matches nothing: its fragment is a dead end
            self.nfa.has_empty_set = True
        start = self.nfa.node()
        states = [self.nfa.node() for _ in range(len(accepting))]
        end = self.nfa.node()
        self.nfa.eps[start].append(states[0])
        for q, row in enumerate(table.tolist()):
            out = self.nfa.edges[states[q]]
            lo = 0
            for b in range(1, 257):  # runs of equal targets become byte ranges
                if b == 256 or row[b] != row[lo]:
                    if row[lo] >= 0:
                        out.append((lo, b - 1, states[row[lo]]))
                    lo = b
            if accepting[q]:
                self.nfa.eps[states[q]].append(end)
        return start, end

    def char_ranges(self, op, av, flags: int) -> list[tuple[int, int]]:
        if op == C.ANY:
            dotall = [(0, MAX_CODE_POINT)]
            return dotall if flags & _DOTALL else complement_ranges([(0x0A, 0x0A)])
        if op == C.CATEGORY:
            return _category(av)
        if op in (C.LITERAL, C.NOT_LITERAL):
            ranges = self.fold(code_point_ranges({av}), flags)
            return ranges if op == C.LITERAL else complement_ranges(ranges)
        negate, chars = False, set()
        ranges: list[tuple[int, int]] = []
        for sub_op, sub_av in av:
            if sub_op == C.NEGATE:
                negate = True
            elif sub_op == C.LITERAL:
                chars.add(sub_av)
            elif sub_op == C.RANGE:
                ranges.append(sub_av)
            elif sub_op == C.CATEGORY:
                ranges.extend(_category(sub_av))
            else:
                raise self.unsupported(f"{sub_op} in a character class")
        merged = _merge(ranges + code_point_ranges(chars))
        merged = self.fold(merged, flags)
        return complement_ranges(merged) if negate else merged

    @staticmethod
    def fold(ranges: list[tuple[int, int]], flags: int) -> list[tuple[int, int]]:
        """Case variants under IGNORECASE (for ranges of reasonable size)."""
        if not flags & _IGNORECASE:
            return ranges
        extra = set()
        for lo, hi in ranges:
            if hi - lo > 0x3000:
                continue
            for c in range(lo, hi + 1):
                ch = chr(c)
                extra.update(ord(x) for x in (ch.lower(), ch.upper(), ch.swapcase()) if len(x) == 1)
        return _merge(ranges + code_point_ranges(extra))


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out
