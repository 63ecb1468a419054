"""JSON strings as regexes: escapes, any unicode, lengths in code points, and object keys.

A JSON string's *content* is a sequence of units, each one code point: a raw character (anything but ``"``,
``\\`` and controls), a short escape (``\\n``...), a ``\\uXXXX`` escape, or a surrogate pair of two escapes.
Length limits count units, so they are exact in code points. Lone surrogate escapes are only accepted in
strings without length or pattern limits (one would count differently from Python).

Object keys use *canonical* units (the spelling ``json.dumps(..., ensure_ascii=False)`` produces: only ``"``,
``\\`` and controls escaped). One spelling per key is what lets the additional-key terminal exclude the known
keys exactly; a model writing ``"\\u0061"`` for a key ``"a"`` is the intentional restriction.
"""
from __future__ import annotations

import json

from lightllm_struct.grammar.json_schema.regex_util import (
    MAX_CODE_POINT,
    Ranges,
    alt,
    char_class,
    escape_literal,
    fixed_width_range,
    intersect,
    normalize,
    repeat,
    subtract,
)

ANY_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
ALL: Ranges = [(0, MAX_CODE_POINT)]
_RAW_EXCLUDED: Ranges = [(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0xD800, 0xDFFF)]
_SHORT = {0x22: "\\x22", 0x5C: "\\\\", 0x2F: "\\/", 0x08: "b", 0x0C: "f", 0x0A: "n", 0x0D: "r", 0x09: "t"}
_HEX = "[0-9a-fA-F]"


def unit(ranges: Ranges, *, canonical: bool = False, hex_limit: int = MAX_CODE_POINT) -> str | None:
    """One string-content unit whose decoded code point lies in ``ranges``; None if no code point does.

    Parameters
    ----------
    ranges : normalized code-point ranges.
    canonical : only the spelling json.dumps(ensure_ascii=False) uses.
    hex_limit : ``\\uXXXX`` escapes (and surrogate pairs, when above 0xFFFF) only for code points up to this.
    """
    ranges = normalize(ranges)
    parts = []
    raw = char_class(subtract(ranges, _RAW_EXCLUDED))
    if raw:
        parts.append(raw)
    short = [ch for cp, ch in _SHORT.items() if _has(ranges, cp) and not (canonical and cp == 0x2F)]
    if short:
        parts.append("\\\\" + (short[0] if len(short) == 1 else "[" + "".join(short) + "]"))
    if canonical:
        controls = subtract(intersect(ranges, [(0, 0x1F)]), normalize((cp, cp) for cp in _SHORT))
        hexes = [h for lo, hi in controls for h in fixed_width_range(lo, hi, 2, base=16)]
        if hexes:
            parts.append("\\\\u00" + (alt(hexes) or ""))
    else:
        bmp = subtract(intersect(ranges, [(0, min(hex_limit, 0xFFFF))]), [(0xD800, 0xDFFF)])
        for lo, hi in bmp:
            parts += ["\\\\u" + h for h in fixed_width_range(lo, hi, 4, base=16, upper=True)]
        for lo, hi in intersect(ranges, [(0x10000, min(hex_limit, MAX_CODE_POINT))]):
            parts += _pairs(lo, hi)
    return alt(parts)


def _has(ranges: Ranges, cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in ranges)


def _pairs(lo: int, hi: int) -> list[str]:
    """Surrogate-pair escapes of the astral code points lo..hi."""
    def split(cp: int) -> tuple[int, int]:
        return 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)

    (h1, l1), (h2, l2) = split(lo), split(hi)
    spans = [(h1, h1, l1, 0xDFFF if h1 != h2 else l2)]
    if h2 - h1 > 1:
        spans.append((h1 + 1, h2 - 1, 0xDC00, 0xDFFF))
    if h2 != h1:
        spans.append((h2, h2, 0xDC00, l2))
    out = []
    for ha, hb, la, lb in spans:
        high = alt(fixed_width_range(ha, hb, 4, base=16, upper=True))
        low = alt(fixed_width_range(la, lb, 4, base=16, upper=True))
        out.append(f"\\\\u{high}\\\\u{low}")
    return out


ANY_UNIT = unit(ALL)


def string_regex(min_length: int = 0, max_length: int | None = None) -> str:
    """A JSON string (with quotes) of min_length..max_length code points."""
    if min_length == 0 and max_length is None:
        return ANY_STRING
    assert ANY_UNIT is not None
    return '"' + repeat(ANY_UNIT, min_length, max_length) + '"'


def literal_string(text: str) -> str:
    """The canonical JSON spelling of ``text`` (with quotes) as a regex."""
    return escape_literal(json.dumps(text, ensure_ascii=False))


def key_regex_excluding(keys: list[str]) -> str:
    """Canonically spelled JSON strings (with quotes) other than ``keys``: the additional-property key.

    A string is not a key iff it leaves the trie of the keys at some unit (then anything may follow) or stops
    at a trie node that ends no key. Both parts walk the trie once; the free tail is written once, so the
    regex grows with the trie, not with the trie times the unit regex.
    """
    trie: dict = {}
    for key in keys:
        node = trie
        for ch in key:
            node = node.setdefault(ch, {})
        node[None] = True
    any_unit = unit(ALL, canonical=True)
    assert any_unit is not None
    leave = _leave(trie)
    stop = _stop(trie)
    # ``stop`` may be "" (the empty key, when it is not a declared one): still an alternative.
    body = alt([leave + any_unit + "*"] + ([stop] if stop is not None else []))
    return '"' + (body or "") + '"'


def _children(node: dict) -> list[str]:
    return sorted(ch for ch in node if ch is not None)


def _leave(node: dict) -> str:
    """A path of the trie, then one unit that is not a child there."""
    kids = _children(node)
    other = unit(subtract(ALL, normalize((ord(c), ord(c)) for c in kids)), canonical=True)
    parts = ([other] if other else []) + [escape_literal(_canonical_char(c)) + _leave(node[c]) for c in kids]
    return alt(parts) or ""


def _stop(node: dict) -> str | None:
    """Paths of the trie (non-empty or not) that end at a node where no key ends; None if there are none."""
    parts = []
    for c in _children(node):
        sub = _stop(node[c])
        spelled = escape_literal(_canonical_char(c))
        if sub is not None:
            parts.append(spelled + sub)
    body = alt(parts)
    if None in node:
        return body
    return "" if body is None else body + "?"


def _canonical_char(ch: str) -> str:
    return json.dumps(ch, ensure_ascii=False)[1:-1]

