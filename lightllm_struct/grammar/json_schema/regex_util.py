"""Regex text building blocks shared by the string and number translators.

Every regex emitted here must be accepted by ``interegular.parse_pattern`` and by Python ``re`` (lark), and must
sit inside a lark ``/.../`` literal. So: no look-around, no back-references, no lazy quantifiers; ASCII control
characters are written ``\\xNN`` (interegular does not know ``\\uNNNN``), other non-ASCII characters raw (never a
lone surrogate: those cannot be written into the grammar text), and ``/`` is always escaped.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)
Ranges = list[tuple[int, int]]

# Characters that need a backslash outside / inside a character class (plus "/" for lark's delimiters).
_META_OUTSIDE = set(".^$*+?{}[]\\|()/-")
_META_INSIDE = set("\\]^-[/")


def normalize(ranges: Iterable[tuple[int, int]]) -> Ranges:
    """Sort and merge inclusive code-point ranges."""
    out: Ranges = []
    for lo, hi in sorted(r for r in ranges if r[0] <= r[1]):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def complement(ranges: Ranges) -> Ranges:
    """All code points not in ``ranges`` (which must be normalized)."""
    out: Ranges = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return out


def intersect(a: Ranges, b: Ranges) -> Ranges:
    """Intersection of two normalized range lists."""
    out: Ranges = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Ranges, b: Ranges) -> Ranges:
    return intersect(a, complement(b))


def contains(ranges: Ranges, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _char(cp: int, meta: set[str]) -> str:
    if SURROGATES[0] <= cp <= SURROGATES[1]:
        raise ValueError(f"lone surrogate U+{cp:04X} cannot be written into a grammar")
    # '"' too: lark's grammar loader turns the regex text \\" into \" (an escaped quote), so never emit it.
    if cp < 0x20 or cp == 0x7F or cp == 0x22:
        return f"\\x{cp:02x}"
    ch = chr(cp)
    return "\\" + ch if ch in meta else ch


def escape_char(cp: int) -> str:
    """One code point as a regex atom outside a character class."""
    return _char(cp, _META_OUTSIDE)


def escape_literal(text: str) -> str:
    """A literal string as regex text."""
    return "".join(escape_char(ord(c)) for c in text)


def char_class(ranges: Ranges) -> str | None:
    """A character class matching exactly ``ranges`` (surrogates dropped); None if empty."""
    ranges = subtract(normalize(ranges), [SURROGATES])
    if not ranges:
        return None
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return escape_char(ranges[0][0])
    others = subtract(complement(ranges), [SURROGATES])
    if _size(others) < _size(ranges):
        # interegular expands a positive class into its characters (a 50k-character range takes seconds);
        # a negated class costs nothing. Surrogates then sit in the class too: harmless, no UTF-8 text has them.
        return "[^" + _class_body(others) + "]" if others else "(?:[^\\x00]|\\x00)"
    return "[" + _class_body(ranges) + "]"


def _size(ranges: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


def _class_body(ranges: Ranges) -> str:
    parts = []
    for lo, hi in ranges:
        if lo == hi:
            parts.append(_char(lo, _META_INSIDE))
        elif hi == lo + 1:
            parts.append(_char(lo, _META_INSIDE) + _char(hi, _META_INSIDE))
        else:
            parts.append(f"{_char(lo, _META_INSIDE)}-{_char(hi, _META_INSIDE)}")
    return "".join(parts)


def alt(parts: Sequence[str]) -> str | None:
    """Alternation of regex fragments as one atom; None for no alternative."""
    uniq = list(dict.fromkeys(parts))
    if not uniq:
        return None
    if len(uniq) == 1:
        return uniq[0] if is_atom(uniq[0]) else "(?:" + uniq[0] + ")"
    return "(?:" + "|".join(uniq) + ")"


def is_atom(text: str) -> bool:
    """Whether ``text`` is one regex atom (so a quantifier may follow it directly)."""
    if not text:  # the empty regex (``(a|a)`` parses as "a" then a branch of two empty sequences)
        return False
    if len(text) == 1 or (len(text) == 2 and text[0] == "\\") or (len(text) == 4 and text.startswith("\\x")):
        return True
    if text[0] not in "[(":
        return False
    depth, i, in_class = 0, 0, False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class, depth = True, depth + (text[0] == "[")
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if text[0] == "[" and not in_class:
            depth = 0
        if depth == 0 and not in_class and i < len(text) - 1:
            return False
        i += 1
    return True


def repeat(atom: str, lo: int, hi: int | None) -> str:
    """``atom`` repeated lo..hi times (hi None = unbounded); ``atom`` must be an atom."""
    if hi is not None and hi == lo:
        return "" if lo == 0 else (atom if lo == 1 else f"{atom}{{{lo}}}")
    if hi is None:
        return {0: atom + "*", 1: atom + "+"}.get(lo, f"{atom}{{{lo},}}")
    if lo == 0 and hi == 1:
        return atom + "?"
    return f"{atom}{{{lo},{hi}}}"


# --- ranges of fixed-width digit strings (decimal integers, hexadecimal \uXXXX escapes) ---

def _digit_class(lo: int, hi: int, digits: str, upper: bool) -> str:
    chars = [digits[d] for d in range(lo, hi + 1)]
    if upper:
        chars += [c.upper() for c in chars if c.isalpha()]
    cps = normalize((ord(c), ord(c)) for c in chars)
    text = char_class(cps)
    assert text is not None
    return text


def fixed_width_range(lo: int, hi: int, width: int, *, base: int = 10, upper: bool = False) -> list[str]:
    """Regex alternatives for the ``width``-digit strings (leading zeros kept) of values lo..hi."""
    digits = "0123456789abcdef"[:base]
    if lo > hi:
        return []

    def text(v: int) -> list[int]:
        out = []
        for _ in range(width):
            out.append(v % base)
            v //= base
        return out[::-1]

    def rec(a: list[int], b: list[int]) -> list[str]:
        if not a:
            return [""]
        if a[0] == b[0]:
            head = _digit_class(a[0], a[0], digits, upper)
            return [head + tail for tail in rec(a[1:], b[1:])]
        n = len(a) - 1
        if all(d == 0 for d in a[1:]) and all(d == base - 1 for d in b[1:]):
            return [_digit_class(a[0], b[0], digits, upper) + _any(n, digits, upper)]
        out = [_digit_class(a[0], a[0], digits, upper) + t for t in rec(a[1:], [base - 1] * n)]
        if b[0] - a[0] > 1:
            out.append(_digit_class(a[0] + 1, b[0] - 1, digits, upper) + _any(n, digits, upper))
        out += [_digit_class(b[0], b[0], digits, upper) + t for t in rec([0] * n, b[1:])]
        return out

    return rec(text(lo), text(hi))


def _any(n: int, digits: str, upper: bool) -> str:
    return repeat(_digit_class(0, len(digits) - 1, digits, upper), n, n) if n else ""


def int_range(lo: int, hi: int | None) -> str | None:
    """Decimal naturals lo..hi (hi None = unbounded) without leading zeros, as one atom; None if empty."""
    if lo < 0 or (hi is not None and lo > hi):
        return None
    parts: list[str] = []
    if lo == 0:
        parts.append("0")
        lo = 1
    width = len(str(lo))
    while hi is None or lo <= hi:
        top = 10**width - 1
        if hi is None and lo == 10 ** (width - 1):
            parts.append("[1-9]" + repeat("[0-9]", width - 1, None))
            break
        end = top if hi is None else min(hi, top)
        if lo <= end:
            parts += fixed_width_range(lo, end, width)
        lo, width = top + 1, width + 1
    return alt(parts)


def fixed_width_set(ranges: Ranges, width: int, *, base: int = 16, upper: bool = True) -> str | None:
    """One prefix-factored regex for the ``width``-digit strings of the values in ``ranges``; None if empty.

    Digits leading to the same set of suffixes share one class, so a set with k holes costs O(k * width)
    alternatives, nested: a DFA-shaped regex that interegular turns into a small automaton quickly (a flat list
    of alternatives, each repeating its prefix, costs it seconds once escapes of many characters are unioned).
    """
    digits = "0123456789abcdef"[:base]

    def rec(spans: tuple[tuple[int, int], ...], width: int) -> str:
        if width == 0:
            return ""
        size = base ** (width - 1)
        groups: dict[tuple[tuple[int, int], ...], list[int]] = {}
        for d in range(base):
            lo, hi = d * size, (d + 1) * size - 1
            sub = tuple((max(a, lo) - lo, min(b, hi) - lo) for a, b in spans if a <= hi and b >= lo)
            if sub:
                groups.setdefault(sub, []).append(d)
        parts = []
        for sub, ds in groups.items():
            cls = char_class(normalize((ord(c), ord(c)) for d in ds
                                       for c in {digits[d], digits[d].upper() if upper else digits[d]}))
            assert cls is not None
            tail = _any(width - 1, digits, upper) if sub == ((0, size - 1),) else rec(sub, width - 1)
            parts.append(cls + tail)
        return parts[0] if len(parts) == 1 else alt(parts) or ""  # one part: a plain sequence, no group needed

    spans = tuple(normalize(r for r in ranges if r[0] <= r[1]))
    return rec(spans, width) if spans else None
