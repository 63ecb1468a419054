"""Bounded numbers in every spelling (plain, exponent e/E, exponent sign, leading zeros, fraction + exponent).

Oracle: exact decimal comparison (``Decimal`` parses every JSON number spelling exactly), never floats.
Promise (scientific.py): a spelling whose mantissa has a shift in the promised range is accepted iff its value
is in range; any other spelling is never accepted out of range.
"""
from __future__ import annotations

import random
import re
from decimal import Decimal

import interegular
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from lightllm_struct.grammar.json_schema.numbers import Bound, number_regex
from lightllm_struct.grammar.json_schema.scientific import MAX_INT_DIGITS, MAX_LEAD_ZEROS, exponent_range
from tests.grammar.json_schema.spellings import number_spelling

SETTINGS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def decimals(max_scale: int = 8):
    """Nonzero-or-zero decimals of up to 4 significant digits over a wide magnitude span."""
    return st.builds(lambda m, e: Decimal(m).scaleb(e), st.integers(-9999, 9999), st.integers(-max_scale, max_scale))


def bounds():
    return st.one_of(st.none(), st.builds(Bound, decimals(), st.booleans()))


def _inside(v: Decimal, lo: Bound | None, hi: Bound | None) -> bool:
    above = lo is None or (v > lo.value if lo.exclusive else v >= lo.value)
    below = hi is None or (v < hi.value if hi.exclusive else v <= hi.value)
    return above and below


def _near(bound: Bound | None) -> list[Decimal]:
    """The bound itself and values a hair either side of it, where digit-by-digit comparison is decided."""
    if bound is None:
        return []
    v = bound.value
    tiny = Decimal(1).scaleb(v.adjusted() - 6) if v else Decimal("1e-9")
    return [v, v + tiny, v - tiny, -v]


@SETTINGS
@given(lo=bounds(), hi=bounds(), values=st.lists(decimals(), max_size=12), seed=st.integers(0, 2**16))
def test_every_promised_spelling_accepted_iff_in_range(lo, hi, values, seed):
    regex = number_regex(lo, hi, integer=False)
    rx = re.compile(regex) if regex else None
    rng = random.Random(seed)
    for value in values + _near(lo) + _near(hi):
        for shift in [None, *range(-MAX_LEAD_ZEROS, MAX_INT_DIGITS)]:
            text = number_spelling(value, rng, shift=shift)
            want = _inside(Decimal(text), lo, hi) and not (text.startswith("-") and Decimal(text) == 0)
            assert bool(rx and rx.fullmatch(text)) == want, (lo, hi, text)


@SETTINGS
@given(lo=bounds(), hi=bounds(), values=st.lists(decimals(12), max_size=12), seed=st.integers(0, 2**16))
def test_spellings_beyond_the_promise_are_never_out_of_range(lo, hi, values, seed):
    """Long mantissas with exponents (``12345e-2``, ``0.0001e4``) may be refused, never accepted wrongly."""
    regex = number_regex(lo, hi, integer=False)
    rx = re.compile(regex) if regex else None
    rng = random.Random(seed)
    for value in values + _near(lo) + _near(hi):
        for shift in (-MAX_LEAD_ZEROS - 2, -MAX_LEAD_ZEROS - 1, MAX_INT_DIGITS, MAX_INT_DIGITS + 3):
            text = number_spelling(value, rng, shift=shift)
            if rx and rx.fullmatch(text):
                assert _inside(Decimal(text), lo, hi), (lo, hi, text)


@pytest.mark.parametrize(("lo", "hi", "good", "bad"), [
    (("0", False), ("1", False), ["3.718e-253", "1e0", "10e-1", "1.000E+00", "0e5", "0.01e2", "100e-2"],
     ["1.01e0", "2e0", "-1e-5", "11e-1", "-0e1", "1e1", "1.0000001"]),
    (("0", True), None, ["1e16", "0.0001e-400", "123456789e-99999"], ["0e5", "0", "-1e3", "0.000e9"]),
    (("0", False), ("1000", False), ["1.5E+2", "1e3", "1e03", "10e2", "0.1e4", "100.0e1"],
     ["1.0001e3", "1e4", "10.1e2", "1e+0004"]),
    (("-2.5", True), ("3.25", False), ["-2.4999e0", "3.25e0", "325e-2", "-0.24e1"],
     ["-25e-1", "3.2501e0", "-2.5E0", "326e-2"]),
    (("1e-300", False), ("1e300", True), ["1e-300", "9.99e299", "1E0"], ["1e300", "0.999e-300", "0e0"]),
])
def test_hand_written_spellings(lo, hi, good, bad):
    regex = number_regex(Bound(Decimal(lo[0]), lo[1]), hi and Bound(Decimal(hi[0]), hi[1]), integer=False)
    interegular.parse_pattern(regex)
    rx = re.compile(regex)
    assert all(rx.fullmatch(t) for t in good), [t for t in good if not rx.fullmatch(t)]
    assert not any(rx.fullmatch(t) for t in bad), [t for t in bad if rx.fullmatch(t)]


@pytest.mark.parametrize(("a", "b"), [(None, None), (0, 0), (-3, 5), (None, -2), (4, None), (-120, -7), (9, 130)])
def test_exponent_range_exact(a, b):
    rx = re.compile(exponent_range(a, b))
    for e in range(-300, 301):
        want = (a is None or e >= a) and (b is None or e <= b)
        spellings = [f"e{e}", f"E{e:+d}", f"e{'-' if e < 0 else ''}00{abs(e)}"] + (["e-0", "E+00"] if e == 0 else [])
        for text in spellings:
            assert bool(rx.fullmatch(text)) == want, (a, b, text)
    assert not rx.fullmatch("e") and not rx.fullmatch("e+-1") and not rx.fullmatch("1")


def test_integers_keep_their_exponent_free_spellings():
    """Integers are never written with an exponent (restriction): ranges stay exact on plain spellings."""
    rx = re.compile(number_regex(Bound(Decimal(-5), False), Bound(Decimal(120), True), integer=True))
    assert rx.fullmatch("-5") and rx.fullmatch("119") and rx.fullmatch("7.00")
    assert not rx.fullmatch("120") and not rx.fullmatch("1e2") and not rx.fullmatch("-6")


def test_grammar_size_stays_small():
    """Exponent spellings cost a bounded number of DFA states per band boundary, never one per magnitude."""
    wide = number_regex(Bound(Decimal("-1e300"), False), Bound(Decimal("1e300"), False), integer=False)
    unit = number_regex(Bound(Decimal(0), False), Bound(Decimal(1), False), integer=False)
    assert len(interegular.parse_pattern(unit).to_fsm().states) < 200
    assert len(wide) < 20_000


def test_disjoint_ranges_stay_provably_disjoint():
    """oneOf over number ranges is compiled when the regexes share no string: exponents must not break that."""
    from lightllm_struct.grammar.json_schema.disjoint import regexes_disjoint

    def rx(lo, hi, hi_x=False):
        return number_regex(Bound(Decimal(lo), False), Bound(Decimal(hi), hi_x), integer=False)

    assert regexes_disjoint(rx("0", "1"), rx("2", "3.5", True))
    assert regexes_disjoint(rx("0", "1", True), rx("1", "2"))
    assert not regexes_disjoint(rx("0", "1"), rx("1", "2"))  # 1, 1e0, 10e-1 ... in both
