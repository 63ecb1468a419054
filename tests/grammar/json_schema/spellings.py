"""Other JSON spellings of the same value: numbers with exponents, strings with escapes.

Used to check that the engine accepts every spelling it promises to (see json_schema/scientific.py and
strings.py), independently of the regexes it builds: spellings are made from the value here, and the oracle
is exact decimal arithmetic (``Decimal`` parses every JSON number spelling exactly).
"""
from __future__ import annotations

import json
import random
from decimal import Decimal

from lightllm_struct.grammar.json_schema.scientific import MAX_INT_DIGITS, MAX_LEAD_ZEROS

_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def plain(value: Decimal) -> str:
    """The shortest exponent-free spelling (no trailing fraction zeros)."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def number_spelling(value: Decimal, rng: random.Random, *, shift: int | None = None) -> str:
    """A random spelling of ``value``: plain or with an exponent whose mantissa has the given shift.

    The shift is drawn from the promised range (scientific.py) unless given; trailing fraction zeros, e/E,
    the exponent's sign and leading zeros are random.
    """
    if value == 0:
        return rng.choice(["0", "0.0", "0e0", "0E+3", "0.00e-07"])
    sign = "-" if value < 0 else ""
    if rng.random() < 0.25:
        return sign + _pad(plain(abs(value)), rng)
    if shift is None:
        shift = rng.randint(-MAX_LEAD_ZEROS, MAX_INT_DIGITS - 1)
    exp = abs(value).adjusted() - shift
    mantissa = _pad(plain(abs(value).scaleb(-exp)), rng)
    exp_sign = "-" if exp < 0 else rng.choice(["", "+"])
    return f"{sign}{mantissa}{rng.choice('eE')}{exp_sign}{'0' * rng.choice([0, 0, 1, 2])}{abs(exp)}"


def _pad(text: str, rng: random.Random) -> str:
    if rng.random() < 0.3:
        return text + ("" if "." in text else ".") + "0" * rng.randint(1, 3)
    return text


def string_spelling(text: str, rng: random.Random) -> str:
    """``text`` as a JSON string (with quotes), each character raw or escaped at random."""
    out = []
    for ch in text:
        cp = ord(ch)
        forms = [] if cp < 0x20 or ch in '"\\' else [ch]
        forms += [_SHORT[ch]] if ch in _SHORT else []
        if cp < 0x10000:
            forms += [f"\\u{cp:04x}", f"\\u{cp:04X}"]
        else:
            high, low = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
            forms += [f"\\u{high:04x}\\u{low:04x}", f"\\u{high:04X}\\u{low:04x}"]
        out.append(rng.choice(forms))
    return '"' + "".join(out) + '"'


def respell(value, rng: random.Random) -> str:
    """Compact JSON of ``value`` with random spellings of floats and strings (ints and keys order kept)."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{string_spelling(k, rng)}:{respell(v, rng)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(respell(v, rng) for v in value) + "]"
    if isinstance(value, str):
        return string_spelling(value, rng)
    if isinstance(value, float):
        return number_spelling(Decimal(repr(value)), rng)
    return json.dumps(value)
