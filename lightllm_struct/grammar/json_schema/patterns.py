"""``pattern`` and ``format`` as regexes over the *encoded* content of a JSON string.

A pattern speaks about decoded code points; the grammar sees the JSON spelling. Every code-point set of the
pattern becomes a unit regex (raw character, short escape, or ``\\uXXXX`` for ASCII code points) so that escaped
spellings match exactly when their decoded character does. Patterns have search semantics (unanchored unless
``^``/``$``). Soundness is judged by Python's ``re.search`` (what ``jsonschema`` uses), so the positive classes
``\\d \\w \\s`` are narrowed to their ASCII members (a subset is sound) and the negated ones are the exact
complements of Python's sets.
"""
from __future__ import annotations

import contextvars
import functools
import re

try:
    from re import _constants as sre_c
    from re import _parser as sre_parse
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as sre_c  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

from lightllm_struct.grammar.json_schema.anchors import (AnchorUnsupported, flat_alternatives, has_anchor,
                                                        split_anchors)
from lightllm_struct.grammar.json_schema.regex_util import (MAX_CODE_POINT, Ranges, alt, char_class, complement,
                                                           normalize, repeat)
from lightllm_struct.grammar.json_schema.strings import ALL, ANY_UNIT, unit

# \uXXXX escapes inside patterned strings only for ASCII: a model writes other characters raw, and the unit
# regex for big non-ASCII classes would otherwise explode in size.
_HEX_LIMIT = 0x7F
_ASCII_CATEGORY = {
    sre_c.CATEGORY_DIGIT: [(0x30, 0x39)],
    sre_c.CATEGORY_WORD: [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    sre_c.CATEGORY_SPACE: [(0x09, 0x0D), (0x20, 0x20)],
}
_NEGATED = {
    sre_c.CATEGORY_NOT_DIGIT: r"\d",
    sre_c.CATEGORY_NOT_WORD: r"\w",
    sre_c.CATEGORY_NOT_SPACE: r"\s",
}
_LINE_TERMINATORS: Ranges = [(0x0A, 0x0A)]  # Python's "." excludes only "\n"


class PatternUnsupported(ValueError):
    """A regex construct with no regular, look-around-free translation (message says which)."""


@functools.lru_cache(maxsize=None)
def _python_class(escape: str) -> tuple[tuple[int, int], ...]:
    rx = re.compile(escape)
    cps = (cp for cp in range(MAX_CODE_POINT + 1) if not 0xD800 <= cp <= 0xDFFF and rx.match(chr(cp)))
    return tuple(normalize((cp, cp) for cp in cps))


def pattern_content_regex(pattern: str) -> str:
    """Regex for the encoded contents of JSON strings that ``re.search(pattern, decoded)`` matches.

    Raises
    ------
    re.error : the pattern does not parse.
    PatternUnsupported : back-references, look-around, word boundaries, inline flags, anchors in repeats.
    """
    parsed = sre_parse.parse(pattern)
    if parsed.state.flags & (sre_c.SRE_FLAG_IGNORECASE | sre_c.SRE_FLAG_MULTILINE | sre_c.SRE_FLAG_DOTALL):
        raise PatternUnsupported("inline flags")
    tree = list(parsed)
    if len(tree) == 1 and tree[0][0] == sre_c.BRANCH:  # "a|^b$": each branch carries its own anchors
        branches = [list(branch) for branch in tree[0][1][1]]
    else:
        branches = [tree]
    try:  # anchors anywhere else: distributed into anchored alternatives (anchors.py)
        flat = [seq for b in branches for seq in (flat_alternatives(b) if has_anchor(b) else [b])]
        parts = [_anchored(split) for split in (split_anchors(seq, parsed.state) for seq in flat)
                 if split is not None]
    except AnchorUnsupported as exc:
        raise PatternUnsupported(str(exc)) from exc
    if not parts:
        raise PatternUnsupported("a pattern whose anchors leave it nothing to match")
    return alt(parts) or ""


_SINGLE_UNIT = (sre_c.LITERAL, sre_c.NOT_LITERAL, sre_c.ANY, sre_c.IN, sre_c.CATEGORY)
_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT)


def length_limited_content(pattern: str, lo: int, hi: int | None) -> str | None:
    """Contents matching an anchored pattern *and* having lo..hi code points, where that is a regex edit.

    Exact for ``^...$`` patterns whose only variable-width part is one repeated single character class
    (``^[a-z][a-z0-9_]*$``, ``^\\d+$``): the string's length is the fixed part plus the repeat count, so the
    length limits narrow the count. None for anything else (the caller refuses the schema).
    """
    parsed = sre_parse.parse(pattern)
    if parsed.state.flags & (sre_c.SRE_FLAG_IGNORECASE | sre_c.SRE_FLAG_MULTILINE | sre_c.SRE_FLAG_DOTALL):
        return None
    tree = list(parsed)
    if len(tree) < 2 or tree[0] != (sre_c.AT, sre_c.AT_BEGINNING) or tree[-1][0] != sre_c.AT \
            or tree[-1][1] not in (sre_c.AT_END, sre_c.AT_END_STRING):
        return None
    body = tree[1:-1]
    widths = [sre_parse.SubPattern(parsed.state, [item]).getwidth() for item in body]
    variable = [i for i, (a, b) in enumerate(widths) if a != b]
    if len(variable) != 1:
        return None
    op, av = body[variable[0]]
    if op not in _REPEATS or len(av[2]) != 1 or av[2][0][0] not in _SINGLE_UNIT:
        return None
    fixed = sum(a for i, (a, _b) in enumerate(widths) if i != variable[0])
    rep_lo, rep_hi = av[0], None if av[1] == sre_c.MAXREPEAT else av[1]
    new_lo = max(rep_lo, lo - fixed)
    new_hi = rep_hi if hi is None else hi - fixed if rep_hi is None else min(rep_hi, hi - fixed)
    if new_hi is not None and new_lo > new_hi:
        return None
    body[variable[0]] = (op, (new_lo, sre_c.MAXREPEAT if new_hi is None else new_hi, av[2]))
    return _seq(body)


def _anchored(split) -> str:
    anchored_start, tree, anchored_end, end = split
    anything = ANY_UNIT if _RENDER.get() is encoded_unit else char_class(ALL)
    any_star = repeat(anything, 0, None) if anything else ""
    body = _seq(tree)
    # Python's "$" also holds before one final newline: a complement (negation.py) needs that whole language
    if anchored_end and end == sre_c.AT_END and _DOLLAR_NEWLINE.get():
        body += repeat(_unit([(0x0A, 0x0A)]), 0, 1)
    return ("" if anchored_start else any_star) + body + ("" if anchored_end else any_star)


def _seq(items) -> str:
    return "".join(_node(op, av) for op, av in items)


def encoded_unit(ranges: Ranges) -> str | None:
    """One JSON string unit of these code points, as patterned strings spell them (see _HEX_LIMIT)."""
    return unit(ranges, hex_limit=_HEX_LIMIT)


# How a code-point set is written: as JSON string content (the grammar's terminals), or as the bare characters
# (decoded text, for automaton products that are encoded only at the end, see fsm_regex.intersection).
_RENDER: contextvars.ContextVar = contextvars.ContextVar("pattern_render", default=encoded_unit)
# Whether "$" takes Python's final-newline slack (a superset of the ECMA "$" the grammar uses for patterns that
# must match, which is the sound side there; a pattern that must *not* match needs the superset instead).
_DOLLAR_NEWLINE: contextvars.ContextVar = contextvars.ContextVar("pattern_dollar_newline", default=False)


def pattern_decoded_regex(pattern: str, *, python_dollar: bool = False) -> str:
    """Full-match regex over *decoded* text for strings that ``re.search(pattern, text)`` matches (with
    ``python_dollar``, also those that match only through ``$`` before a final newline).

    Raises
    ------
    re.error, PatternUnsupported : as pattern_content_regex.
    """
    token, dollar = _RENDER.set(char_class), _DOLLAR_NEWLINE.set(python_dollar)
    try:
        return pattern_content_regex(pattern)
    finally:
        _RENDER.reset(token)
        _DOLLAR_NEWLINE.reset(dollar)


def _unit(ranges: Ranges) -> str:
    text = _RENDER.get()(ranges)
    if text is None:
        raise PatternUnsupported("a character class that matches nothing")
    return text


def _node(op, av) -> str:
    if op == sre_c.LITERAL:
        return _unit([(av, av)])
    if op == sre_c.NOT_LITERAL:
        return _unit(complement([(av, av)]))
    if op == sre_c.ANY:
        return _unit(complement(_LINE_TERMINATORS))
    if op == sre_c.IN:
        return _unit(_class(av))
    if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
        lo, hi, sub = av
        inner = _seq(sub)
        atom = alt([inner]) if inner else ""
        return repeat(atom, lo, None if hi == sre_c.MAXREPEAT else hi) if atom else ""
    if op == sre_c.SUBPATTERN:
        _group, add_flags, del_flags, sub = av
        if add_flags or del_flags:
            raise PatternUnsupported("inline flags")
        return alt([_seq(sub)]) or ""
    if op == sre_c.BRANCH:
        return alt([_seq(b) for b in av[1]]) or ""
    if op == sre_c.AT:
        raise PatternUnsupported(f"anchor or boundary {av} inside the pattern")
    if op in (sre_c.CATEGORY,):
        return _unit(_class([(op, av)]))
    raise PatternUnsupported(f"regex construct {op}")


def _class(items) -> Ranges:
    ranges: Ranges = []
    negate = False
    for op, av in items:
        if op == sre_c.NEGATE:
            negate = True
        elif op == sre_c.LITERAL:
            ranges.append((av, av))
        elif op == sre_c.RANGE:
            ranges.append(av)
        elif op == sre_c.CATEGORY and av in _ASCII_CATEGORY:
            ranges += _ASCII_CATEGORY[av]
        elif op == sre_c.CATEGORY and av in _NEGATED:
            ranges += complement(list(_python_class(_NEGATED[av])))
        else:
            raise PatternUnsupported(f"character class item {op} {av}")
    ranges = normalize(ranges)
    return complement(ranges) if negate else ranges


# --- formats: ASCII-only contents, so no escapes are needed (an escaped spelling is rejected) ---

_DAY31 = "(?:0[1-9]|[12][0-9]|3[01])"
# Years 0001-9999 (Python's date, which the format checker uses, has no year 0); leap years for Feb 29.
_YEAR = "(?:[1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
_LEAP = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE = (f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-{_DAY31}|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
        f"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)")
TIME = (r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
        r"(?:[zZ]|[+\-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9\\-]{0,61}[A-Za-z0-9])?"
HOSTNAME = f"{_LABEL}(?:\\.{_LABEL})*"
_ATOM = "[A-Za-z0-9!#$%&'*+\\/=?\\^_`{|}~\\-]+"
EMAIL = f"{_ATOM}(?:\\.{_ATOM})*@{HOSTNAME}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
IPV4 = f"{_OCTET}(?:\\.{_OCTET}){{3}}"
_H16 = "[0-9a-fA-F]{1,4}"
_LS32 = f"(?:{_H16}:{_H16}|{IPV4})"


def _ipv6() -> str:
    def head(n: int) -> str:  # up to n h16 groups before "::"
        return "" if n < 0 else f"(?:(?:{_H16}:){{0,{n}}}{_H16})?" if n else f"(?:{_H16})?"

    forms = [f"(?:{_H16}:){{6}}{_LS32}", f"::(?:{_H16}:){{5}}{_LS32}"]
    forms += [f"{head(k)}::(?:{_H16}:){{{4 - k}}}{_LS32}" for k in range(0, 4)]
    forms += [f"{head(4)}::{_LS32}", f"{head(5)}::{_H16}", f"{head(6)}::"]
    return "(?:" + "|".join(f.replace("{1}", "") for f in forms) + ")"


IPV6 = _ipv6()
UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_URI_CHAR = "(?:[A-Za-z0-9\\-._~:\\/?#\\[\\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})"
URI = f"[A-Za-z][A-Za-z0-9+\\-.]*:{_URI_CHAR}*"
# RFC 3339 appendix A's duration (a subset of what jsonschema's checker, isoduration, reads: no fractions, no
# skipped units such as "P1Y2D")
_DUR_TIME = "T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
DURATION = f"P(?:(?:[0-9]+D|[0-9]+M(?:[0-9]+D)?|[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?)(?:{_DUR_TIME})?|{_DUR_TIME}|[0-9]+W)"
FORMATS = {
    "date": DATE, "time": TIME, "date-time": f"{DATE}[Tt]{TIME}", "email": EMAIL, "uuid": UUID,
    "uri": URI, "ipv4": IPV4, "ipv6": IPV6, "hostname": HOSTNAME, "duration": DURATION,
}


def length_range(pattern: str, *, anchored: bool = False) -> tuple[int, int | None]:
    """Code-point lengths of strings a pattern (search semantics) or a format regex (``anchored``) accepts:
    (shortest, longest or None). Used to tell when minLength/maxLength add nothing to a pattern."""
    parsed = sre_parse.parse(pattern)
    tree = list(parsed)
    branches = [list(b) for b in tree[0][1][1]] if len(tree) == 1 and tree[0][0] == sre_c.BRANCH else [tree]
    lows, highs = [], []
    for branch in branches:
        start = anchored or (bool(branch) and branch[0] == (sre_c.AT, sre_c.AT_BEGINNING))
        end = anchored or (bool(branch) and branch[-1][0] == sre_c.AT
                           and branch[-1][1] in (sre_c.AT_END, sre_c.AT_END_STRING))
        sub = sre_parse.SubPattern(parsed.state, branch)
        lo, hi = sub.getwidth()
        lows.append(lo)
        highs.append(hi if start and end and hi < sre_c.MAXREPEAT else None)
    return min(lows), (None if any(h is None for h in highs) else max(highs))
