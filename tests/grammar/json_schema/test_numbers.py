"""Integer and number range regexes against exact decimal comparison."""
from __future__ import annotations

import random
import re
from decimal import Decimal

import interegular
import pytest

from lightllm_struct.grammar.json_schema.numbers import Bound, number_regex
from lightllm_struct.grammar.json_schema.regex_util import int_range

BOUNDS = [None, ("0", False), ("0", True), ("1.5", False), ("1.5", True), ("-2.5", False), ("-2.5", True),
          ("7", False), ("7", True), ("0.1", True), ("99.99", False), ("-0.001", True), ("100.001", False),
          ("1.05", True), ("-10", False)]


def _candidates() -> list[str]:
    rng = random.Random(7)
    fixed = ["0", "1", "-1", "0.5", "-0.5", "1.5", "2", "10", "-10", "1.05", "1.10", "1.1", "0.0", "1.0", "-2.5",
             "7", "7.0", "7.00001", "6.99999", "-7", "0.10", "0.09", "0.1", "100.001", "100.0010", "99.990",
             "-0.0010", "-0.0009", "1.049", "1.051", "-2.50", "-2.49"]
    rand = [f"{rng.choice(['', '-'])}{rng.randint(0, 120)}"
            + (f".{rng.randint(0, 999):0{rng.randint(1, 3)}d}" if rng.random() < 0.6 else "") for _ in range(300)]
    return fixed + rand


def _inside(v: Decimal, lo: Bound | None, hi: Bound | None) -> bool:
    above = lo is None or (v > lo.value if lo.exclusive else v >= lo.value)
    below = hi is None or (v < hi.value if hi.exclusive else v <= hi.value)
    return above and below


@pytest.mark.parametrize("integer", [False, True])
def test_number_ranges_are_exact(integer):
    cands = _candidates()
    for lo_spec in BOUNDS:
        for hi_spec in BOUNDS:
            lo = Bound(Decimal(lo_spec[0]), lo_spec[1]) if lo_spec else None
            hi = Bound(Decimal(hi_spec[0]), hi_spec[1]) if hi_spec else None
            regex = number_regex(lo, hi, integer=integer)
            rx = re.compile(regex) if regex else None
            if regex:
                interegular.parse_pattern(regex)
            for text in cands:
                value = Decimal(text)
                want = _inside(value, lo, hi) and (not integer or value == value.to_integral_value())
                got = bool(rx and rx.fullmatch(text))
                assert not got or want, (lo_spec, hi_spec, integer, text, regex)  # sound
                if lo is not None or hi is not None:  # bounded: every exponent-free spelling but "-0"
                    assert got or not want or text in ("-0", "-0.0"), (lo_spec, hi_spec, integer, text, regex)


def test_unbounded_number_accepts_exponents_and_rejects_bad_forms():
    rx = re.compile(number_regex(None, None, integer=False))
    for good in ["0", "-0", "1e5", "1.5E-3", "-12.25e+10", "3.0"]:
        assert rx.fullmatch(good)
    for bad in ["01", "1.", ".5", "+1", "1e", "--1", "NaN", "Infinity"]:
        assert not rx.fullmatch(bad)


def test_integer_allows_zero_fraction_only():
    rx = re.compile(number_regex(None, None, integer=True))
    assert rx.fullmatch("12") and rx.fullmatch("12.00") and rx.fullmatch("-3")
    assert not rx.fullmatch("12.5") and not rx.fullmatch("1e3")


@pytest.mark.parametrize("lo,hi", [(0, None), (5, None), (13, None), (0, 0), (7, 123), (99, 1000), (1234, 56789)])
def test_int_range_exact_on_all_small_naturals(lo, hi):
    rx = re.compile(int_range(lo, hi))
    for n in range(0, 70000):
        assert bool(rx.fullmatch(str(n))) == (n >= lo and (hi is None or n <= hi)), n
    assert not rx.fullmatch("0" + str(max(lo, 1)))


def test_empty_ranges():
    assert int_range(5, 4) is None
    assert number_regex(Bound(Decimal(3), True), Bound(Decimal(3), False), integer=False) is None
    assert number_regex(Bound(Decimal("2.1"), False), Bound(Decimal("2.9"), False), integer=True) is None


def _number_spellings(seed: int, n: int) -> list[str]:
    """Random JSON number texts: integer part, optional fraction (trailing zeros too), optional exponent."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        whole = rng.choice(["0", str(rng.randint(1, 9)), str(rng.randint(10, 12000)), "100", "2500"])
        frac = rng.choice(["", "", f".{rng.randint(0, 999):0{rng.randint(1, 4)}d}", ".0", ".50", ".000"])
        exp = rng.choice(["", "", "e-1", "E-2", "e-05", "e3", "e+2", "E0", "e-0", "e+00", "e-12", "e-99", "e-218",
                          "e-323", "e-324", "e-400"])
        out.append(rng.choice(["", "-"]) + whole + frac + exp)
    return out


def test_non_integral_numbers_by_value_are_exactly_non_integral():
    from lightllm_struct.grammar.json_schema.numbers import NON_INTEGRAL_VALUE

    matched = 0
    for text in _number_spellings(11, 3000):
        value = Decimal(text)
        integral = value == value.to_integral_value()
        if re.fullmatch(NON_INTEGRAL_VALUE, text):
            matched += 1
            assert not integral, text  # sound: never an integer
            as_float = float(text)
            assert as_float != int(as_float), text  # nor one once a float parser (jsonschema's oracle) reads it
        elif not integral and "e" not in text.lower():
            raise AssertionError(f"an exponent-free non-integral spelling rejected: {text}")  # complete
    assert matched > 300
    for value in (0.5, -2.5, 1e-05, 1.5e-07, 2.5e-99, 1.7394114880722507e-218, 5e-324, -2.2250738585072014e-308,
                  0.1, 123.456, 9007199254740.5):
        assert re.fullmatch(NON_INTEGRAL_VALUE, repr(value)), repr(value)  # Python's own spellings
    interegular.parse_pattern(NON_INTEGRAL_VALUE)


def test_non_integral_numbers_by_syntax_have_a_fraction_or_an_exponent():
    from lightllm_struct.grammar.json_schema.numbers import NON_INTEGRAL_SYNTAX

    for text in _number_spellings(12, 2000):
        assert bool(re.fullmatch(NON_INTEGRAL_SYNTAX, text)) == any(c in text for c in ".eE"), text
    interegular.parse_pattern(NON_INTEGRAL_SYNTAX)
