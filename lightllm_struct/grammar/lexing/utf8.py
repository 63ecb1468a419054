"""Code point ranges as UTF-8 byte-range sequences (the decomposition regex engines use).

A range of code points ``[lo, hi]`` becomes a few sequences of byte ranges such that a byte string of
one to four bytes matches some sequence iff it is the UTF-8 encoding of a code point in the range.
Surrogates (U+D800..U+DFFF) have no UTF-8 encoding and are dropped.
"""
from __future__ import annotations

MAX_CODE_POINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)
_LENGTH_LIMITS = (0x7F, 0x7FF, 0xFFFF)

ByteRanges = tuple[tuple[int, int], ...]


def utf8_sequences(lo: int, hi: int) -> list[ByteRanges]:
    """UTF-8 byte-range sequences of the code points ``lo..hi`` (inclusive).

    Every sequence lists, per byte position, the inclusive range of byte values; the product of the
    ranges of one sequence is exactly a contiguous block of encodings.
    """
    out: list[ByteRanges] = []
    todo = [(lo, min(hi, MAX_CODE_POINT))]
    while todo:
        a, b = todo.pop()
        if a > b:
            continue
        pieces = _split(a, b)
        if pieces is not None:
            todo.extend(pieces)
            continue
        ea, eb = chr(a).encode("utf-8"), chr(b).encode("utf-8")
        out.append(tuple(zip(ea, eb)))
    out.sort()
    return out


def _split(a: int, b: int) -> list[tuple[int, int]] | None:
    """Split ``[a, b]`` once so that both halves get closer to one byte-range sequence, or None."""
    s_lo, s_hi = _SURROGATES
    if a <= s_hi and b >= s_lo:
        return [(a, s_lo - 1), (s_hi + 1, b)]
    for limit in _LENGTH_LIMITS:
        if a <= limit < b:
            return [(a, limit), (limit + 1, b)]
    if b <= 0x7F:
        return None
    # Continuation bytes carry 6 bits each: a range is one sequence only if, at every level where a and
    # b differ, the lower bits span the full 0..63 block.
    for level in (1, 2, 3):
        mask = (1 << (6 * level)) - 1
        if a & ~mask != b & ~mask:
            if a & mask != 0:
                return [(a, a | mask), ((a | mask) + 1, b)]
            if b & mask != mask:
                return [(a, (b & ~mask) - 1), (b & ~mask, b)]
    return None


def code_point_ranges(chars: set[int]) -> list[tuple[int, int]]:
    """Sorted maximal inclusive ranges covering exactly ``chars``."""
    ranges: list[tuple[int, int]] = []
    for c in sorted(chars):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1] = (ranges[-1][0], c)
        else:
            ranges.append((c, c))
    return ranges


def complement_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Ranges of all code points (0..U+10FFFF) not covered by the sorted disjoint ``ranges``."""
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return out
