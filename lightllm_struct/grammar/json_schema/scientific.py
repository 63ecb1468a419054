"""Bounded JSON numbers written with an exponent (``1.5e-3``, ``12E+2``, ``0.5e1``), exactly.

A nonzero mantissa has a *shift* s: an integer part of n digits gives s = n - 1, a zero integer part followed by
z fraction zeros gives s = -(z + 1). With its significand digits g (leading digit nonzero, the point ignored)
the value is 0.g x 10^(s + e + 1), so it lies in the magnitude band k = s + e, i.e. in [10^k, 10^(k+1)).
Bands strictly between the bounds' bands accept any digits; the (at most two) bands of the bounds compare g
digit by digit against the bound's digits; the exponent is an integer regex (an interval, or one value).

Which band a spelling falls in depends on the mantissa's length *and* the exponent's value, a relation no
regular language captures for unbounded lengths. So an exponent is accepted after mantissas of at most
``MAX_INT_DIGITS`` integer digits, or ``0.`` and at most ``MAX_LEAD_ZEROS - 1`` further zeros; every such
spelling of an in-range value is accepted, nothing out of range ever is. A magnitude side without limits
(``exclusiveMinimum: 0`` and no maximum, say) needs no band and takes every mantissa.
"""
from __future__ import annotations

import functools
from decimal import Decimal

from lightllm_struct.grammar.json_schema.regex_util import alt, char_class, int_range

MAX_INT_DIGITS = 3
MAX_LEAD_ZEROS = 2
ANY_EXPONENT = r"[eE][+\-]?[0-9]+"
FREE = -1  # comparison state: already strictly inside the bound, the remaining digits are free


def scientific_magnitude(lo: tuple[Decimal, bool], hi: tuple[Decimal, bool] | None) -> str | None:
    """Regex for exponent spellings of magnitudes in [lo, hi] (each ``(value, exclusive)``, lo >= 0).

    None when no value qualifies. Zero (``0e5``, ``0.00E-1``) is included iff the range holds it.
    """
    (lo_v, lo_x) = lo
    parts = []
    if lo_v == 0 and not lo_x and (hi is None or hi[0] > 0 or not hi[1]):
        parts.append(r"0(?:\.0+)?" + ANY_EXPONENT)
    if hi is not None and hi[0] <= 0:
        return alt(parts)
    k_lo, f_lo = (None, None) if lo_v == 0 else _band(lo_v)
    k_hi, f_hi = (None, None) if hi is None else _band(hi[0])
    for s in range(-MAX_LEAD_ZEROS, MAX_INT_DIGITS):
        inside_lo = None if k_lo is None else k_lo + 1 - s
        inside_hi = None if k_hi is None else k_hi - 1 - s
        exp = exponent_range(inside_lo, inside_hi)
        if exp is not None:
            parts.append(mantissa(s, None, None) + exp)
        if k_lo is not None and k_lo == k_hi:
            parts.append(_piece(s, (f_lo, lo_x), (f_hi, hi[1]), k_lo))
            continue
        if k_lo is not None:
            parts.append(_piece(s, (f_lo, lo_x), None, k_lo))
        if k_hi is not None:
            parts.append(_piece(s, None, (f_hi, hi[1]), k_hi))
    return alt([p for p in parts if p])


def _band(value: Decimal) -> tuple[int, str]:
    """Band k and significand digits f (no trailing zeros) of a positive decimal: value = 0.f x 10^(k+1)."""
    sign, digits, _exp = value.normalize().as_tuple()
    assert sign == 0 and value > 0
    return value.adjusted(), "".join(map(str, digits)).rstrip("0")


def _piece(s: int, low, high, k: int) -> str | None:
    body = mantissa(s, low, high)
    return None if body is None else body + (exponent_range(k - s, k - s) or "")


def exponent_range(a: int | None, b: int | None) -> str | None:
    """``[eE]`` and a signed decimal (leading zeros allowed, ``-0`` = 0) in [a, b]; None-sides unbounded."""
    if a is not None and b is not None and a > b:
        return None
    parts = []
    if b is None or b >= 0:
        nonneg = int_range(max(a, 0) if a is not None else 0, b)
        parts.append(r"\+?0*" + nonneg if nonneg else "")
    if a is None or a < 0:
        neg = int_range(max(1, -b) if b is not None else 1, None if a is None else -a)
        if neg:
            parts.append("-0*" + neg)
    if (a is None or a <= 0) and (b is None or b >= 0):
        parts.append("-0+")
    return "[eE]" + (alt([p for p in parts if p]) or "")


Bound = tuple[str, bool] | None  # significand digits of a bound in the same band, and whether exclusive


@functools.lru_cache(maxsize=512)
def mantissa(s: int, low: Bound, high: Bound) -> str | None:
    """Mantissas of shift ``s`` whose significand g satisfies 0.g >= / > low and <= / < high (None: free)."""
    gen = _Walk(low, high, s + 1 if s >= 0 else 0)
    start = (0 if low else FREE, 0 if high else FREE)
    if s >= 0:
        return gen.edges(start, 0, first=True)
    digits = gen.edges(start, "F", first=True)
    return None if digits is None else r"0\." + "0" * (-s - 1) + digits


class _Walk:
    """Regex of a digit-comparison automaton against up to two bounds, with the point after ``p`` digits.

    A state is (lower, upper): the number of bound digits matched so far, or FREE. Positions count integer
    digits (0..p) or are "F" once in the fraction, where a state's only cycle is a self-loop, so the automaton
    is a DAG plus self-loops and turns into a regex by plain recursion.
    """

    def __init__(self, low: Bound, high: Bound, p: int):
        self.low, self.high, self.p = low, high, p
        self.memo: dict = {}

    def step(self, state: tuple[int, int], d: int) -> tuple[int, int] | None:
        lo, hi = state
        if self.low and lo != FREE:
            f = self.low[0]
            ref = int(f[lo]) if lo < len(f) else 0
            lo = lo + (lo < len(f)) if d == ref else FREE if d > ref else None
        if self.high and hi != FREE and lo is not None:
            f = self.high[0]
            ref = int(f[hi]) if hi < len(f) else 0
            hi = hi + (hi < len(f)) if d == ref else FREE if d < ref else None
        return None if lo is None or hi is None else (lo, hi)

    def accepts(self, state: tuple[int, int]) -> bool:
        lo, hi = state
        lo_ok = not self.low or lo == FREE or (lo == len(self.low[0]) and not self.low[1])
        hi_ok = not self.high or hi == FREE or hi < len(self.high[0]) or not self.high[1]
        return lo_ok and hi_ok

    def edges(self, state, pos, *, first: bool = False, loop: bool = False) -> str | None:
        """One digit out of ``state`` (nonzero if ``first``), then the rest; self-loops skipped if ``loop``."""
        groups: dict = {}
        for d in range(1 if first else 0, 10):
            nxt = self.step(state, d)
            if nxt is not None and not (loop and nxt == state):
                groups.setdefault(nxt, []).append(d)
        nxt_pos = "F" if pos == "F" else pos + 1
        parts = []
        for nxt, digits in groups.items():
            rest = self.rest(nxt, nxt_pos)
            if rest is not None:
                parts.append(char_class([(48 + d, 48 + d) for d in digits]) + rest)
        return alt(parts)

    def rest(self, state, pos) -> str | None:
        """What may follow once ``state`` is reached at ``pos``: more digits, the point, or the end."""
        key = (state, pos)
        if key not in self.memo:
            self.memo[key] = self._rest(state, pos)
        return self.memo[key]

    def _rest(self, state, pos) -> str | None:
        if pos == "F":
            loop = [d for d in range(10) if self.step(state, d) == state]
            out = self.edges(state, "F", loop=True)
            options = ([out] if out else []) + ([""] if self.accepts(state) else [])
            if not options:
                return None
            star = char_class([(48 + d, 48 + d) for d in loop]) + "*" if loop else ""
            return star + _optional(options)
        if pos < self.p:
            return self.edges(state, pos)
        frac = self.edges(state, "F")
        options = ([r"\." + frac] if frac else []) + ([""] if self.accepts(state) else [])
        return _optional(options) if options else None


def _optional(options: list[str]) -> str:
    """Alternation of regex texts where "" (stop here) may be one of them, written without empty branches."""
    body = alt([o for o in options if o])
    if body is None:
        return ""
    return body + "?" if "" in options else body
