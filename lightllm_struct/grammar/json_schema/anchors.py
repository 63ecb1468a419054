"""Anchors anywhere in a pattern (``^a$|^b$``, ``(^x)``, ``^(a$|b)``), rewritten to anchored alternatives.

Without the multiline flag ``^`` holds only at the string's start and ``$`` only at its end, so in one
alternative that is a flat sequence ``P ^ M $ S`` every match must consume nothing for ``P`` and ``S``: the
alternative is ``M`` anchored at both ends when ``P`` and ``S`` can match the empty string, and matches nothing
otherwise. Groups are inlined and alternations that hold an anchor are distributed over their sequence, which
turns every pattern whose anchors are outside repeats into such alternatives, exactly.
"""
from __future__ import annotations

import itertools

try:
    from re import _constants as sre_c
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as sre_c  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

STARTS = (sre_c.AT_BEGINNING, sre_c.AT_BEGINNING_STRING)
ENDS = (sre_c.AT_END, sre_c.AT_END_STRING)
MAX_ALTERNATIVES = 64


class AnchorUnsupported(ValueError):
    """An anchor inside a repeat, or a sequence no exact rewrite covers (message says which)."""


def has_anchor(items) -> bool:
    for op, av in items:
        if op == sre_c.AT and av in STARTS + ENDS:
            return True
        if op == sre_c.SUBPATTERN and has_anchor(av[-1]):
            return True
        if op == sre_c.BRANCH and any(has_anchor(b) for b in av[1]):
            return True
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and has_anchor(av[2]):
            return True
    return False


def flat_alternatives(items: list) -> list[list]:
    """Sequences whose union is ``items`` and in which anchors appear only as items of the sequence itself."""
    out: list[list] = [[]]
    for op, av in items:
        if op == sre_c.SUBPATTERN and has_anchor(av[-1]):
            if av[1] or av[2]:
                raise AnchorUnsupported("inline flags")
            options = flat_alternatives(list(av[-1]))
        elif op == sre_c.BRANCH and any(has_anchor(b) for b in av[1]):
            options = [alt for branch in av[1] for alt in flat_alternatives(list(branch))]
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and has_anchor(av[2]):
            raise AnchorUnsupported("an anchor inside a repeat")
        else:
            options = [[(op, av)]]
        out = [a + b for a, b in itertools.product(out, options)]
        if len(out) > MAX_ALTERNATIVES:
            raise AnchorUnsupported("too many alternatives with anchors")
    return out


def split_anchors(seq: list, state) -> tuple[bool, list, bool, sre_c._NamedIntConstant | None] | None:
    """(anchored at start, the middle, anchored at end, the end anchor) of a flat alternative; None when the
    alternative matches nothing (something that consumes text before ``^`` or after ``$``)."""
    starts = [i for i, (op, av) in enumerate(seq) if op == sre_c.AT and av in STARTS]
    ends = [i for i, (op, av) in enumerate(seq) if op == sre_c.AT and av in ENDS]
    first = starts[-1] + 1 if starts else 0
    last = ends[0] if ends else len(seq)
    if first > last:
        raise AnchorUnsupported("an end anchor before a start anchor")
    outside = seq[:first] + seq[last:]
    if any(sre_parse.SubPattern(state, [item]).getwidth()[0] > 0 for item in outside):
        return None
    if ends and any(not (op == sre_c.AT and av in STARTS + ENDS) for op, av in seq[last:]):
        # Python's "$" also holds before a final newline, which a nullable tail might consume
        raise AnchorUnsupported("text after an end anchor")
    return bool(starts), seq[first:last], bool(ends), (seq[ends[0]][1] if ends else None)
