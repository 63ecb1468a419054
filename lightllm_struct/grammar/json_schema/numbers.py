"""JSON numbers and integers as regexes, with exact minimum/maximum/exclusive bounds.

Integer bounds are exact digit-range regexes. Number bounds are exact too: every exponent-free spelling of an
in-range value, and its exponent spellings (``1.25e1``) as far as scientific.py describes (a mantissa of at most
a few integer digits); never an out-of-range value. Negative zero (``-0``, ``-0.0``) is never produced under
bounds. An integer may carry a zero fraction (``3.0``, at most 8 zeros), which JSON Schema counts as an
integer; integers are never written with an exponent (``1e2``), an intentional restriction.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from lightllm_struct.grammar.json_schema.regex_util import alt, int_range
from lightllm_struct.grammar.json_schema.scientific import ANY_EXPONENT, scientific_magnitude

ANY_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+\-]?[0-9]+)?"
ANY_INTEGER = r"-?(?:0|[1-9][0-9]*)(?:\.0{1,8})?"
# Magnitudes without an upper bound, from 0 (inclusive) or above 0: every spelling, any mantissa length.
_ANY_MAGNITUDE = r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:" + ANY_EXPONENT + ")?"
_ANY_NONZERO = r"(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.[0-9]*[1-9][0-9]*)(?:" + ANY_EXPONENT + ")?"
# Bounded: an unbounded run of zeros lets a sampling model write "12.000..." until max_tokens.
_ZERO_FRACTION = r"(?:\.0{1,8})?"
_DIGITS = "[0-9]"


# The non-integral numbers (the complement of ``integer`` among numbers, negation.py). By value (draft 6 on:
# 1.0 is an integer): every exponent-free spelling (a nonzero fraction digit), and exponent spellings whose value
# is non-integral whatever the digits: a mantissa from 1 up with a nonzero fraction digit or ending in a nonzero
# digit, and a negative exponent down to the smallest double (5e-324: below, a float parser's 0.0 would be an
# integer). Positive exponents need the fraction's length compared with the exponent's value (no regular
# language): not written, an intentional restriction (every non-integral value has its exponent-free spelling,
# and Python writes no positive exponent for a non-integral float).
_FRACTIONAL = r"(?:0|[1-9][0-9]*)\.[0-9]*[1-9][0-9]*"
_ODD_MANTISSA = r"(?:[1-9][0-9]*\.[0-9]*[1-9][0-9]*|[1-9](?:[0-9]*[1-9])?)"
_TINY_EXPONENT = r"[eE]-0*(?:[1-9][0-9]?|[12][0-9]{2}|3[01][0-9]|32[0-3])"
NON_INTEGRAL_VALUE = (r"-?(?:" + _FRACTIONAL + r"(?:[eE][+\-]?0+)?|" + _ODD_MANTISSA + _TINY_EXPONENT
                      + r"|[3-9](?:\.[0-9]*[1-9][0-9]*)?[eE]-0*324)")
# By syntax (draft 4: an integer is written without fraction or exponent): exactly the numbers with either.
NON_INTEGRAL_SYNTAX = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+\-]?[0-9]+)?|[eE][+\-]?[0-9]+)"


@dataclass(frozen=True)
class Bound:
    value: Decimal
    exclusive: bool


def to_decimal(value: int | float) -> Decimal:
    """Exact decimal of a JSON number as written (``repr`` keeps a float's shortest round-trip digits)."""
    try:
        return Decimal(value) if isinstance(value, int) else Decimal(repr(value))
    except InvalidOperation as exc:  # inf / nan cannot come from JSON but may from Python callers
        raise ValueError(f"not a finite number: {value!r}") from exc


def number_regex(lo: Bound | None, hi: Bound | None, *, integer: bool) -> str | None:
    """A regex for the JSON numbers (integers if ``integer``) within the bounds; None if none exist."""
    if lo is None and hi is None:
        return ANY_INTEGER if integer else ANY_NUMBER
    parts: list[str] = []
    # Non-negative values: magnitude in [max(lo, 0), hi].
    if hi is None or hi.value > 0 or (hi.value == 0 and not hi.exclusive):
        nn_lo = lo if lo is not None and lo.value >= 0 else Bound(Decimal(0), False)
        body = _magnitude(nn_lo, hi, integer)
        if body:
            parts.append(body)
    # Negative values: magnitude in (max(-hi, 0), -lo], zero excluded so "-0" never appears.
    if lo is None or lo.value < 0:
        neg_lo = Bound(-hi.value, hi.exclusive) if hi is not None and hi.value < 0 else Bound(Decimal(0), True)
        neg_hi = None if lo is None else Bound(-lo.value, lo.exclusive)
        body = _magnitude(neg_lo, neg_hi, integer)
        if body:
            parts.append("-" + body)
    return alt(parts)


def _magnitude(lo: Bound, hi: Bound | None, integer: bool) -> str | None:
    if hi is not None and (hi.value < lo.value or (hi.value == lo.value and (lo.exclusive or hi.exclusive))):
        return None
    if integer:
        first = math.floor(lo.value) + 1 if lo.exclusive or lo.value != math.floor(lo.value) else int(lo.value)
        if hi is None:
            last = None
        else:
            last = math.ceil(hi.value) - 1 if hi.exclusive or hi.value != math.ceil(hi.value) else int(hi.value)
        digits = int_range(first, last)
        return None if digits is None else digits + _ZERO_FRACTION
    if lo.value == 0 and hi is None:
        return _ANY_NONZERO if lo.exclusive else _ANY_MAGNITUDE
    sci = scientific_magnitude((lo.value, lo.exclusive), None if hi is None else (hi.value, hi.exclusive))
    return alt([p for p in (_decimal_magnitude(lo, hi), sci) if p])


def _split(value: Decimal) -> tuple[int, str]:
    """Integer part and fraction digits (no trailing zeros) of a non-negative decimal."""
    whole = math.floor(value)
    frac = format(value - whole, "f")
    frac = frac.split(".", 1)[1].rstrip("0") if "." in frac else ""
    return int(whole), frac


def _decimal_magnitude(lo: Bound, hi: Bound | None) -> str | None:
    ia, fa = _split(lo.value)
    if hi is None:
        parts = [_with_fraction(int_range(ia, ia), _frac_ge(fa, lo.exclusive)),
                 _with_fraction(int_range(ia + 1, None), ([_DIGITS + "+"], True))]
        return alt([p for p in parts if p])
    ib, fb = _split(hi.value)
    if ia == ib:
        return _with_fraction(int_range(ia, ia), _frac_between(fa, lo.exclusive, fb, hi.exclusive))
    parts = [_with_fraction(int_range(ia, ia), _frac_ge(fa, lo.exclusive)),
             _with_fraction(int_range(ia + 1, ib - 1), ([_DIGITS + "+"], True)),
             _with_fraction(int_range(ib, ib), _frac_le(fb, hi.exclusive))]
    return alt([p for p in parts if p])


Frac = tuple[list[str], bool]
"""Fraction digit strings: regex alternatives for the non-empty ones, and whether "no fraction" (= 0) fits."""


def _with_fraction(whole: str | None, frac: Frac) -> str | None:
    alts, zero_ok = frac
    if whole is None or (not alts and not zero_ok):
        return None
    if not alts:
        return whole
    tail = r"\." + (alt(alts) or "")
    return whole + (f"(?:{tail})?" if zero_ok else tail)


def _frac_ge(f: str, strict: bool) -> Frac:
    """Digit strings g with 0.g >= 0.f (> if strict); f has no trailing zeros."""
    if not f:
        return ([f"{_DIGITS}*[1-9]{_DIGITS}*"], False) if strict else ([_DIGITS + "+"], True)
    alts = [f[:i] + _range(int(f[i]) + 1, 9) + _DIGITS + "*" for i in range(len(f)) if f[i] != "9"]
    alts.append(f + (f"{_DIGITS}*[1-9]{_DIGITS}*" if strict else _DIGITS + "*"))
    return alts, False


def _frac_le(f: str, strict: bool) -> Frac:
    """Digit strings g with 0.g <= 0.f (< if strict)."""
    if not f:
        return ([], False) if strict else (["0+"], True)
    alts = [f[:i] + _range(0, int(f[i]) - 1) + _DIGITS + "*" for i in range(len(f)) if f[i] != "0"]
    alts += [f[:k] + "0*" for k in range(1, len(f))]
    if not strict:
        alts.append(f + "0*")
    return alts, True


def _frac_between(fa: str, sa: bool, fb: str, sb: bool) -> Frac:
    """Digit strings g with 0.fa <= 0.g <= 0.fb (strictness per side)."""
    if not fa and not sa:
        return _frac_le(fb, sb)
    if not fb:
        return [], False
    zero_ok = not fa and not sa
    a0, b0 = (fa[0] if fa else "0"), fb[0]
    if a0 == b0:
        sub_alts, sub_zero = _frac_between(fa[1:], sa, fb[1:], sb)
        return [a0 + s for s in sub_alts] + ([a0] if sub_zero else []), zero_ok
    low_alts, low_zero = _frac_ge(fa[1:], sa)
    high_alts, high_zero = _frac_le(fb[1:], sb)
    alts = [a0 + s for s in low_alts] + ([a0] if low_zero else [])
    if int(b0) - int(a0) > 1:
        alts.append(_range(int(a0) + 1, int(b0) - 1) + _DIGITS + "*")
    alts += [b0 + s for s in high_alts] + ([b0] if high_zero else [])
    return alts, zero_ok


def _range(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"
