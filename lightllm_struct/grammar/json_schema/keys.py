"""The additional-property key: every JSON spelling of every string except the declared keys.

Escapes decode to one code point each, so a string spells no declared key iff, walking the trie of the declared
keys (over code points), it *deviates* at some unit (a character that is no child there) or stops at a node
where no key ends. A deviating ``\\uXXXX`` escape is recognised at its first hex digit that leads away from every
child's code; the rest of that escape (its *tail*: the remaining hex digits, or a surrogate pair's completion)
is the same wherever the walk left the trie. So the regex is grouped by tail: for each tail one trie walk to
the deviation points, then the tail once, then any units. Written per node instead, every node would carry a
whole "any other unit" regex (dozens of automaton states each), which makes regex-to-automaton conversion
(interegular, used to check terminal overlaps) take seconds for a handful of keys.

A lone surrogate escape in a key is refused (an intentional restriction: it is no key a model means to write).
"""
from __future__ import annotations

import functools

from lightllm_struct.grammar.json_schema.regex_util import (MAX_CODE_POINT, alt, char_class, fixed_width_set,
                                                           normalize, subtract)
from lightllm_struct.grammar.json_schema.strings import ANY_UNIT, spelled

_SHORT = {'"': "\\x22", "\\": "\\\\", "/": "\\/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
_RAW_EXCLUDED = {0x22, 0x5C}
_HIGH = (0xD800, 0xDBFF)
_LOW = (0xDC00, 0xDFFF)
_LOW_ANY = "\\\\u" + (fixed_width_set([_LOW], 4) or "")
_HEX_DIGIT = "0123456789abcdef"

Groups = dict[str, list[str]]
"""tail regex -> regexes of the walks that deviate leaving that tail to read."""


def key_regex_excluding(keys: list[str]) -> str:
    """JSON strings (with quotes, any spelling) other than ``keys``: the additional-property key."""
    trie: dict = {}
    for key in keys:
        node = trie
        for ch in key:
            node = node.setdefault(ch, {})
        node[None] = True
    groups = _leave(trie)
    leave = alt([(alt(walks) or "") + tail for tail, walks in groups.items()])
    stop = _stop(trie)
    # ``stop`` may be "" (the empty key, when it is not a declared one): still an alternative.
    parts = ([leave + ANY_UNIT + "*"] if leave else []) + ([stop] if stop is not None else [])
    return '"' + (alt(parts) or "") + '"'


def _leave(node: dict) -> Groups:
    kids = sorted(ch for ch in node if ch is not None)
    groups: Groups = {}
    for tail, walk in _deviations(frozenset(ord(c) for c in kids)):
        groups.setdefault(tail, []).append(walk)
    for c in kids:
        for tail, walks in _leave(node[c]).items():
            groups.setdefault(tail, []).append(spelled(c) + (alt(walks) or ""))
    return groups


@functools.lru_cache(maxsize=1024)
def _deviations(kids: frozenset[int]) -> tuple[tuple[str, str], ...]:
    """(tail, head) pairs: heads that start a unit which can spell none of ``kids``."""
    out = []
    # Raw: never controls, '"' or '\\' (surrogates are dropped by char_class).
    raw = char_class(subtract([(0x20, MAX_CODE_POINT)], normalize((cp, cp) for cp in kids | _RAW_EXCLUDED)))
    if raw:
        out.append(("", raw))
    short = [s for ch, s in _SHORT.items() if ord(ch) not in kids]
    if short:
        out.append(("", "\\\\" + (short[0] if len(short) == 1 else "[" + "".join(short) + "]")))
    codes = {cp if cp < 0x10000 else _split(cp)[0]: cp for cp in kids}
    out += [(tail, "\\\\u" + head) for tail, head in _hex_deviations(kids, set(codes))]
    return tuple(out)


def _split(cp: int) -> tuple[int, int]:
    return 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)


def _hex_deviations(kids: frozenset[int], codes: set[int], *, low_of: int | None = None) -> list[tuple[str, str]]:
    """Deviations inside ``\\u`` + 4 hex digits (``low_of``: the low half of a pair whose high half is given)."""
    out: list[tuple[str, str]] = []

    def walk(prefix: int, depth: int, head: str) -> None:
        groups: dict[str, list[int]] = {}
        size = 16 ** (3 - depth)
        for d in range(16):
            value = prefix * 16 + d
            lo, hi = value * size, (value + 1) * size - 1
            if any(lo <= c <= hi for c in codes):
                sub = head + _digit(d)
                if depth < 3:
                    walk(value, depth + 1, sub)
                elif low_of is None and _HIGH[0] <= value <= _HIGH[1]:  # a kid's high half: its low half next
                    lows = {_split(cp)[1] for cp in kids if cp >= 0x10000 and _split(cp)[0] == value}
                    out.extend((t, f"{sub}\\\\u{h}") for t, h in _hex_deviations(kids, lows, low_of=value))
                continue
            tail = _completion(lo, hi, depth, low_of is not None)
            if tail is not None:
                groups.setdefault(tail, []).append(d)
        for tail, ds in groups.items():
            out.append((tail, head + _digits_class(ds)))

    walk(0, 0, "")
    return out


@functools.lru_cache(maxsize=4096)
def _completion(lo: int, hi: int, depth: int, low_half: bool) -> str | None:
    """What completes an escape whose code lies in [lo, hi] (``depth`` + 1 digits read); None if nothing."""
    width = 3 - depth
    if low_half:
        return _suffixes([(max(lo, _LOW[0]), min(hi, _LOW[1]))], lo, width)
    parts = []
    bmp = _suffixes([(lo, min(hi, _HIGH[0] - 1)), (max(lo, _LOW[1] + 1), hi)], lo, width)
    if bmp is not None:
        parts.append(bmp)
    high = _suffixes([(max(lo, _HIGH[0]), min(hi, _HIGH[1]))], lo, width)
    if high is not None:
        parts.append(high + _LOW_ANY)
    if len(parts) < 2:  # one part may be "" (the escape is complete), which alt() does not take
        return parts[0] if parts else None
    return alt(parts)


def _suffixes(ranges: list[tuple[int, int]], base: int, width: int) -> str | None:
    live = [(a - base, b - base) for a, b in ranges if a <= b]
    if not live:
        return None
    return "" if width == 0 else fixed_width_set(live, width)


def _digit(d: int) -> str:
    ch = _HEX_DIGIT[d]
    return ch if ch.isdigit() else f"[{ch}{ch.upper()}]"


def _digits_class(ds: list[int]) -> str:
    """Hex digits in either case, as one class."""
    cls = char_class([(ord(c), ord(c)) for d in ds for c in {_HEX_DIGIT[d], _HEX_DIGIT[d].upper()}])
    assert cls is not None
    return cls


def _stop(node: dict) -> str | None:
    """Paths of the trie (non-empty or not) that end at a node where no key ends; None if there are none."""
    parts = []
    for c in sorted(ch for ch in node if ch is not None):
        sub = _stop(node[c])
        if sub is not None:
            parts.append(spelled(c) + sub)
    body = alt(parts)
    if None in node:
        return body
    return "" if body is None else body + "?"
