"""null, booleans, numbers and strings: each one terminal (a regex), with its keywords enforced exactly."""
from __future__ import annotations

import re
from typing import Any

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema.builder import GrammarBuilder, Piece
from lightllm_struct.grammar.json_schema.values import nonneg_int
from lightllm_struct.grammar.json_schema.numbers import (NON_INTEGRAL_SYNTAX, NON_INTEGRAL_VALUE, Bound, number_regex,
                                                         to_decimal)
from lightllm_struct.grammar.json_schema.patterns import (
    FORMATS,
    encoded_unit,
    pattern_decoded_regex,
    PatternUnsupported,
    length_limited_content,
    length_range,
    pattern_content_regex,
)
from lightllm_struct.grammar.json_schema.combinators import MORE_PATTERNS, NON_INTEGRAL, NOT_MULTIPLES, NOT_PATTERNS
from lightllm_struct.grammar.json_schema.dialects import INTEGER_SYNTAX
from lightllm_struct.grammar.json_schema.fsm_regex import intersection
from lightllm_struct.grammar.json_schema.multiples import multiple_fsm, step_parts
from lightllm_struct.grammar.json_schema.regex_util import alt, char_class, repeat
from lightllm_struct.grammar.json_schema.strings import ALL, string_regex

# Length limits intersected with a pattern or format cost automaton states per counted character.
MAX_INTERSECTED_LENGTH = 256


def compile_scalar(builder: GrammarBuilder, schema: dict, json_type: str, ptr: str) -> Piece:
    """The terminal for one scalar JSON type under ``schema``'s keywords for that type."""
    if json_type == "null":
        return builder.scalar("null", ["null"])
    if json_type == "boolean":
        return builder.scalar("true|false", ["boolean"])
    if json_type in ("integer", "number"):
        return builder.scalar(_number(schema, json_type == "integer", ptr), ["number"])
    return builder.scalar(_string(schema, ptr, assert_formats=builder.assert_formats), ["string"])


def const_scalar(builder: GrammarBuilder, value: Any) -> Piece:
    """Exactly one scalar value (numbers in every spelling, see numbers.py; strings as ``builder.literal``)."""
    if value is None:
        return builder.scalar("null", ["null"])
    if isinstance(value, bool):
        return builder.scalar("true" if value else "false", ["boolean"])
    if isinstance(value, (int, float)):
        exact = Bound(to_decimal(value), False)
        return builder.scalar(number_regex(exact, exact, integer=False), ["number"])
    if isinstance(value, str):
        return builder.scalar(builder.literal(value), ["string"])
    raise TypeError(f"not a JSON scalar: {value!r}")


def _numeric(schema: dict, key: str, ptr: str):
    value = schema.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise SchemaError(f"{key} must be a number", pointer=f"{ptr}/{key}")
    return value


def _number(schema: dict, integer: bool, ptr: str) -> str | None:
    step = _numeric(schema, "multipleOf", ptr)
    if step is not None:
        if step <= 0:
            raise SchemaError("multipleOf must be greater than 0", pointer=f"{ptr}/multipleOf")
    lo = _tighter([_bound(schema, "minimum", False, ptr), _bound(schema, "exclusiveMinimum", True, ptr)], lower=True)
    hi = _tighter([_bound(schema, "maximum", False, ptr), _bound(schema, "exclusiveMaximum", True, ptr)], lower=False)
    bounded = number_regex(lo, hi, integer=integer)
    if integer and schema.get(INTEGER_SYNTAX) and bounded is not None:  # draft-04: no "2.0" for an integer
        bounded = intersection([bounded, "-?(?:0|[1-9][0-9]*)"])
    if schema.get(NON_INTEGRAL) and bounded is not None:
        if integer:
            return None
        fractional = NON_INTEGRAL_SYNTAX if schema[NON_INTEGRAL] == "syntax" else NON_INTEGRAL_VALUE
        bounded = fractional if lo is None and hi is None else intersection([bounded, fractional])
    if not (step is None or integer and step == 1 or bounded is None):
        bounded = _multiple_of(step, bounded, ptr)
    if schema.get(NOT_MULTIPLES) and bounded is not None:
        bounded = _not_multiple_of(schema[NOT_MULTIPLES], bounded, ptr)
    return bounded


# Exponent-free numbers: the non-multiples are the difference with the multiples' automaton, which reads no
# exponent ("3e0" would slip through the difference): so written without one, as multipleOf's (every value has
# such a spelling).
_EXPONENT_FREE = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"


def _not_multiple_of(steps: list, bounded: str, ptr: str) -> str | None:
    """The bounded numbers that are multiples of none of ``steps``."""
    fsms = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise SchemaError("multipleOf must be a number greater than 0", pointer=ptr)
        parts = step_parts(step)
        try:
            if parts is None:
                raise OverflowError("no short decimal form")
            fsms.append(multiple_fsm(*parts))
        except OverflowError as exc:
            raise UnsupportedSchemaFeature(f"not: the non-multiples of {step}: {exc}", pointer=ptr) from exc
    try:
        plain = intersection([bounded, _EXPONENT_FREE], excluded=fsms)
        # no non-integral number is a multiple of an integer step: those take their exponent spellings too
        fractional = intersection([bounded, NON_INTEGRAL_VALUE]) if all(
            float(step).is_integer() for step in steps) else None
    except OverflowError as exc:
        raise UnsupportedSchemaFeature(f"not: the non-multiples of {steps}: {exc}", pointer=ptr) from exc
    return alt([r for r in (plain, fractional) if r is not None])


def _multiple_of(step: int | float, bounded: str, ptr: str) -> str | None:
    """The bounded numbers that are multiples of ``step`` (written without exponent)."""
    parts = step_parts(step)
    try:
        if parts is None:
            raise OverflowError("no short decimal form")
        return intersection([bounded, multiple_fsm(*parts)])
    except OverflowError as exc:
        raise UnsupportedSchemaFeature(f"multipleOf {step}: {exc}", pointer=f"{ptr}/multipleOf") from exc


def _bound(schema: dict, key: str, exclusive: bool, ptr: str) -> Bound | None:
    value = _numeric(schema, key, ptr)
    return None if value is None else Bound(to_decimal(value), exclusive)


def _tighter(bounds: list[Bound | None], *, lower: bool) -> Bound | None:
    live = [b for b in bounds if b is not None]
    if not live:
        return None
    # Among equal values the exclusive bound is the tighter one.
    key = (lambda b: (b.value, b.exclusive)) if lower else (lambda b: (-b.value, b.exclusive))
    return max(live, key=key)


def _string(schema: dict, ptr: str, *, assert_formats: bool = True) -> str | None:
    lo = nonneg_int(schema, "minLength", ptr, 0) or 0
    hi = nonneg_int(schema, "maxLength", ptr)
    if hi is not None and lo > hi:
        return None
    lengths = lo > 0 or hi is not None
    pattern, fmt = schema.get("pattern"), schema.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise SchemaError("format must be a string", pointer=f"{ptr}/format")
    # draft 2020-12's default makes format an annotation (assert_formats=False); an unknown one is one always
    if not assert_formats or fmt not in FORMATS:
        fmt = None
    content = _pattern(pattern, ptr) if pattern is not None else None
    # merged allOf patterns (all must hold) and complements (negation.py: none may match); _pattern checks
    # each one (a pattern whose content regex is empty, "^$", counts all the same)
    more = [p for p in schema.get(MORE_PATTERNS, []) if _pattern(p, ptr) is not None]
    excluded = [p for p in schema.get(NOT_PATTERNS, []) if _pattern(p, ptr) is not None]
    if excluded:
        return _intersection([] if pattern is None else [pattern, *more], fmt, (lo, hi), ptr, excluded=excluded)
    if fmt is None and content is None:
        return string_regex(lo, hi)
    counted = lengths and not _implied(pattern, fmt, lo, hi)
    if more:
        return _intersection([pattern, *more], fmt, (lo, hi) if lengths else None, ptr)
    if not counted and (fmt is None or content is None):
        return '"' + (content if content is not None else FORMATS[fmt]) + '"'
    if counted and fmt is None:
        limited = _length_limited(pattern, lo, hi, ptr)
        if limited is not None:
            return '"' + limited + '"'
    return _intersection([] if pattern is None else [pattern], fmt, (lo, hi) if counted else None, ptr)


def _intersection(patterns: list[str], fmt: str | None, lengths: tuple[int, int | None] | None,
                  ptr: str, *, excluded: list[str] = ()) -> str | None:
    """Strings matching the patterns, format and lengths given and none of the ``excluded`` patterns: the
    product of their automata over decoded text, written back as JSON string content."""
    parts = [FORMATS[fmt]] if fmt is not None else []  # format regexes are ASCII: their own decoded form
    parts += [pattern_decoded_regex(p) for p in patterns]
    # what must not match takes Python's wider "$" (jsonschema's verdict), so no value it rejects gets through
    minus = [pattern_decoded_regex(p, python_dollar=True) for p in excluded]
    if lengths is not None:
        lo, hi = lengths
        if max(lo, hi or 0) > MAX_INTERSECTED_LENGTH:
            raise UnsupportedSchemaFeature(f"minLength/maxLength above {MAX_INTERSECTED_LENGTH} together with a "
                                           "pattern or format", pointer=f"{ptr}/{'maxLength' if hi else 'minLength'}")
        parts.append(repeat(char_class(ALL) or "", lo, hi))
    try:
        content = intersection(parts, minus, render=encoded_unit)
        return None if content is None else '"' + content + '"'
    except OverflowError as exc:
        raise UnsupportedSchemaFeature(f"pattern/format/length combination too large to intersect ({exc})",
                                       pointer=f"{ptr}/{_widest_part(patterns, fmt, lengths)}") from exc


def _widest_part(patterns: list[str], fmt: str | None, lengths: tuple[int, int | None] | None) -> str:
    """The keyword a too-large intersection is refused at: the length bound if one took part (the usual cause),
    else the pattern, else the format (a pattern and a format alone can also blow up)."""
    if lengths is not None:
        return "maxLength" if lengths[1] is not None else "minLength"
    return "pattern" if patterns else "format"


def _pattern(pattern: Any, ptr: str) -> str:
    if not isinstance(pattern, str):
        raise SchemaError("pattern must be a string", pointer=f"{ptr}/pattern")
    try:
        return pattern_content_regex(pattern)
    except re.error as exc:
        if "bad escape" in str(exc):  # e.g. \\p{L}: valid ECMA-262, unknown to Python's re
            raise UnsupportedSchemaFeature(f"pattern: {exc}", pointer=f"{ptr}/pattern") from exc
        raise SchemaError(f"invalid pattern: {exc}", pointer=f"{ptr}/pattern") from exc
    except PatternUnsupported as exc:
        raise UnsupportedSchemaFeature(f"pattern: {exc}", pointer=f"{ptr}/pattern") from exc


def _length_limited(pattern: Any, lo: int, hi: int | None, ptr: str) -> str | None:
    if not isinstance(pattern, str):
        return None
    _pattern(pattern, ptr)  # its own errors first, with their pointer
    try:
        return length_limited_content(pattern, lo, hi)
    except PatternUnsupported:
        return None


def _implied(pattern: Any, fmt: Any, lo: int, hi: int | None) -> bool:
    """Whether every string the pattern/format accepts already has lo..hi code points."""
    try:
        if isinstance(pattern, str):
            short, long = length_range(pattern)
        elif isinstance(fmt, str) and fmt in FORMATS:
            short, long = length_range(FORMATS[fmt], anchored=True)
        else:
            return False
    except re.error:
        return False  # the pattern's own error is reported with its pointer
    return lo <= short and (hi is None or (long is not None and long <= hi))
