"""Regexes of free text that holds none of a set of markers: the text before a trigger such as ``<tool_call>``.

The byte lexer takes the longest match and never backtracks, so "text, then the marker" cannot be two
terminals (the text terminal would swallow the marker, or stop inside it and strand the lexer). It is one
terminal instead, ``text_without(markers) + marker``, whose first marker occurrence ends it; the text on its
own (at the end of the output) is ``text_without(markers)``. Both run in one product DFA, so the first byte
decides nothing and free text may start with any character, ``<`` included.

The regex is exact for markers whose first character appears nowhere else in any marker (``<tool_call>``,
``</think>``, ``[TOOL_CALLS]``, ``{"name": "``): then every occurrence of a first character restarts the
match, and the language is a sequence of units ``[^S]`` (no first character) or ``P* B``, where ``P`` is a
proper prefix of a marker and ``B`` a prefix followed by a character that continues no marker.
"""
from __future__ import annotations

from collections.abc import Sequence

from lightllm_struct.grammar.errors import GrammarSyntaxError

# Within a bounded text, runs of bare marker prefixes ("<<<") are cut at this many: each run is one unit.
_MAX_PREFIX_RUN = 3


def regex_char(ch: str) -> str:
    """``ch`` as a regex atom, safe inside a Lark ``/.../`` literal (no raw control character, ``/`` escaped)."""
    if ch.isalnum() and ch.isascii() or ch == "_":
        return ch
    if ord(ch) < 0x20 or ch == "\x7f":
        return f"\\x{ord(ch):02x}"
    if ch.isascii():
        return "\\" + ch
    return ch


def regex_literal(text: str) -> str:
    """A regex matching exactly ``text``."""
    return "".join(regex_char(c) for c in text)


def _negated_class(chars: set[str]) -> str:
    return "[^" + "".join(regex_char(c) for c in sorted(chars)) + "]"


def check_markers(markers: Sequence[str]) -> tuple[str, ...]:
    """The distinct markers, checked to have the shape ``text_without`` is exact for.

    Raises
    ------
    GrammarSyntaxError
        A marker is empty, its first character recurs inside a marker, or one marker is a prefix of another.
    """
    unique = tuple(dict.fromkeys(markers))
    if not unique or any(not m for m in unique):
        raise GrammarSyntaxError("markers (triggers, end markers) must be non-empty strings")
    firsts = {m[0] for m in unique}
    for m in unique:
        inner = firsts & set(m[1:])
        if inner:
            raise GrammarSyntaxError(f"marker {m!r}: its characters {sorted(inner)} also start a marker; a marker's "
                                     "first character may appear only at its start")
        for other in unique:
            if other != m and other.startswith(m):
                raise GrammarSyntaxError(f"marker {m!r} is a prefix of marker {other!r}")
    return unique


def text_without(markers: Sequence[str], *, max_units: int | None = None) -> str:
    """A regex of the non-empty strings containing none of ``markers``.

    Parameters
    ----------
    markers:
        The strings the text must not contain (see ``check_markers`` for their shape).
    max_units:
        Bound the text to this many units (a unit is one character, or a marker's first character with the
        few characters that tell it from the markers), as a counted repeat; None for unbounded.

    Raises
    ------
    GrammarSyntaxError
        From ``check_markers``; or ``max_units`` below 1.
    """
    unique = check_markers(markers)
    if max_units is not None and max_units < 1:
        raise GrammarSyntaxError(f"a text bound must be at least 1 unit, not {max_units}")
    firsts = {m[0] for m in unique}
    prefixes = sorted({m[:i] for m in unique for i in range(1, len(m))})
    bare = "|".join(regex_literal(p) for p in prefixes)
    breaks = []
    for p in prefixes:
        nexts = {m[len(p)] for m in unique if m.startswith(p) and len(m) > len(p)}
        breaks.append(regex_literal(p) + _negated_class(firsts | nexts))
    other, brk = _negated_class(firsts), "|".join(breaks)
    if not prefixes:  # one-character markers: the text just avoids them
        return f"{other}+" if max_units is None else f"{other}{{1,{max_units}}}"
    if max_units is None:
        return f"(?:(?:{other}|(?:{bare})*(?:{brk}))+(?:{bare})*|(?:{bare})+)"
    run = f"(?:{bare}){{0,{_MAX_PREFIX_RUN - 1}}}"
    return (f"(?:(?:{other}|{run}(?:{brk})){{1,{max_units}}}(?:{bare}){{0,{_MAX_PREFIX_RUN}}}"
            f"|(?:{bare}){{1,{_MAX_PREFIX_RUN}}})")
