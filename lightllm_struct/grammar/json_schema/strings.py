"""JSON strings as regexes: escapes, any unicode, lengths in code points, and object keys.

A JSON string's *content* is a sequence of units, each one code point: a raw character (anything but ``"``,
``\\`` and controls), a short escape (``\\n``...), a ``\\uXXXX`` escape, or a surrogate pair of two escapes.
Length limits count units, so they are exact in code points. Lone surrogate escapes are only accepted in
strings without length or pattern limits (one would count differently from Python).

Literal strings (``const``, ``enum``, declared property names) accept the two ``json.dumps`` spellings by
default, or (option ``literal_escapes="any"``) every spelling of their code points (raw, short escape,
``\\uXXXX`` in either case, surrogate pairs); keys.py builds the additional-property key, which accepts every
spelling of every undeclared key in both modes.
"""
from __future__ import annotations

import functools
import json

from lightllm_struct.grammar.cache import LRU
from lightllm_struct.grammar.json_schema.regex_util import (
    MAX_CODE_POINT,
    SURROGATES,
    Ranges,
    alt,
    char_class,
    escape_char,
    escape_literal,
    fixed_width_set,
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


def unit(ranges: Ranges, *, hex_limit: int = MAX_CODE_POINT) -> str | None:
    """One string-content unit whose decoded code point lies in ``ranges``; None if no code point does.

    Parameters
    ----------
    ranges : normalized code-point ranges.
    hex_limit : ``\\uXXXX`` escapes (and surrogate pairs, when above 0xFFFF) only for code points up to this.
    """
    ranges = normalize(ranges)
    parts = []
    raw = char_class(subtract(ranges, _RAW_EXCLUDED))
    if raw:
        parts.append(raw)
    # Everything after the backslash in one factored alternation: a flat list of "\\uXXXX" alternatives
    # makes regex-to-automaton conversion (interegular, lark) slow once many characters are excluded.
    escaped = []
    short = [ch for cp, ch in _SHORT.items() if _has(ranges, cp)]
    if short:
        escaped.append(short[0] if len(short) == 1 else "[" + "".join(short) + "]")
    hexes = []
    bmp = fixed_width_set(subtract(intersect(ranges, [(0, min(hex_limit, 0xFFFF))]), [SURROGATES]), 4)
    if bmp:
        hexes.append(bmp)
    for lo, hi in intersect(ranges, [(0x10000, min(hex_limit, MAX_CODE_POINT))]):
        hexes += _pairs(lo, hi)
    if hexes:
        escaped.append("u" + (alt(hexes) or ""))
    if escaped:
        parts.append("\\\\" + (alt(escaped) or ""))
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
    merged: list[tuple[int, int, int, int]] = []
    for span in spans:  # neighbouring high halves with the same low range share one regex
        if merged and merged[-1][1] + 1 == span[0] and merged[-1][2:] == span[2:]:
            merged[-1] = (merged[-1][0], span[1], span[2], span[3])
        else:
            merged.append(span)
    out = []
    for ha, hb, la, lb in merged:
        high = fixed_width_set([(ha, hb)], 4)
        low = fixed_width_set([(la, lb)], 4)
        out.append(f"{high}\\\\u{low}")  # the first "\\u" is written by the caller
    return out


ANY_UNIT = unit(ALL)


def string_regex(min_length: int = 0, max_length: int | None = None) -> str:
    """A JSON string (with quotes) of min_length..max_length code points."""
    if min_length == 0 and max_length is None:
        return ANY_STRING
    assert ANY_UNIT is not None
    return '"' + repeat(ANY_UNIT, min_length, max_length) + '"'


def literal_string(text: str, *, any_spelling: bool = False) -> str:
    """``text`` (with quotes) as a regex: its two ``json.dumps`` spellings, or every JSON spelling.

    The default takes the spelling with raw UTF-8 (``ensure_ascii=False``) and the one with ``\\uXXXX`` for
    every non-ASCII character (``ensure_ascii=True``): one spelling for ASCII text, so the grammar forces a
    declared key or an enum value outright (jump-forward), and a model cannot wander into ``"\\u006bind"``
    for ``"kind"`` (a small model sampling at temperature 1 did, running out of tokens). Every value stays
    reachable; only its spelling is restricted. ``any_spelling`` accepts raw characters, short escapes and
    ``\\uXXXX`` in either case for every character, as JSON allows.
    """
    spellings = literal_spellings(text)
    if any_spelling:
        regex = '"' + "".join(spelled(ch) for ch in text) + '"'
    else:
        regex = alt([escape_literal(sp) for sp in spellings]) or ""
    _SPELLED_LITERALS.put(_lark_form(regex), spellings[0])
    return regex


def literal_spellings(text: str) -> list[str]:
    """The spellings ``literal_string(text)`` accepts by default: raw UTF-8 first, then ``ensure_ascii``."""
    canonical = '"' + "".join(_canonical(ch) for ch in text) + '"'
    return list(dict.fromkeys([canonical, json.dumps(text, ensure_ascii=True)]))


# Regex of literal_string(v) -> one spelling of v. Checking two terminals for a common match needs an automaton
# per regex unless one side is a literal; a literal_string regex is as good as one (see literal_spelling).
# Bounded because every distinct key or const a user sends lands here; a forgotten entry only costs the LALR
# check an automaton for that pair (literal_spelling says None), never a wrong answer.
_SPELLED_LITERALS: LRU[str, str] = LRU(maxsize=16384)


def literal_spelling(regex: str) -> str | None:
    """One JSON spelling of the value if ``regex`` came from literal_string (also after lark read it), else None.

    Every string terminal the frontend builds that matches some spelling of a value also matches this one
    (the raw or short-escape spelling: no unit regex leaves it out), so ``re.fullmatch(other, spelling)``
    decides whether ``other`` shares a string with ``regex``.
    """
    return _SPELLED_LITERALS.get(_lark_form(regex))


def _lark_form(regex: str) -> str:
    return regex.replace("\\x22", '"')  # lark's grammar loader writes the \x22 of a regex as a raw quote


def _canonical(ch: str) -> str:
    cp = ord(ch)
    if SURROGATES[0] <= cp <= SURROGATES[1]:
        return f"\\u{cp:04x}"
    return json.dumps(ch, ensure_ascii=False)[1:-1]


@functools.lru_cache(maxsize=4096)
def spelled(ch: str) -> str:
    """Every spelling of one code point; a lone surrogate (possible in a Python str) only as its escape.

    Written flat, ``(?:a|\\\\u0061)``: literals repeat this per character, and regex text length is what
    the lexer's regex parser pays for.
    """
    cp = ord(ch)
    codes = [cp] if cp < 0x10000 else list(_split(cp))
    escaped = "\\\\u".join(_hex4(c) for c in codes)
    forms = [] if cp < 0x20 or cp in (0x22, 0x5C) or SURROGATES[0] <= cp <= SURROGATES[1] else [escape_char(cp)]
    forms += ["\\\\" + _SHORT[cp]] if cp in _SHORT else []
    forms.append("\\\\u" + escaped)
    return alt(forms) or ""


def _split(cp: int) -> tuple[int, int]:
    return 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)


def _hex4(code: int) -> str:
    out = ""
    for ch in f"{code:04x}":
        out += ch if ch.isdigit() else f"[{ch.upper()}{ch}]"
    return out
