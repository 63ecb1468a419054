"""A schema is checked against its draft's metaschema before conversion: wrong-typed keywords are refused here,
by JSON pointer, instead of crashing the converter somewhere inside (``"anyOf": 3`` once raised
``TypeError: object of type 'int' has no len()``; the compile fuzz of issue 11 found dozens of such).

``jsonschema`` does the checking (its validators carry every draft's metaschema). Formats are not asserted:
``pattern`` is ECMA 262, which the converter reads itself; Python's ``re`` would refuse some valid ones.
"""
from __future__ import annotations

import itertools
from typing import Any

from lightllm_struct.grammar.errors import SchemaError

# dialects.DRAFTS -> the jsonschema validator of that draft's metaschema
_VALIDATORS = {"draft4": "Draft4Validator", "draft6": "Draft6Validator", "draft7": "Draft7Validator",
               "draft2019-09": "Draft201909Validator", "draft2020-12": "Draft202012Validator"}
# Without $schema or a draft, the converter reads 2020-12 and the old forms it does not allow (boolean
# exclusiveMinimum, items arrays, id, ...) as draft-04: a schema whose only 2020-12 violations are on those
# keywords is accepted when an older metaschema accepts it; any other violation is refused.
_DEFAULT_TRIES = ("Draft7Validator", "Draft4Validator")
_OLD_FORMS = frozenset({"exclusiveMinimum", "exclusiveMaximum", "items", "id", "additionalItems", "dependencies"})
_MAX_ERRORS = 64


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def _first_error(cls: Any, schema: Any) -> Any:
    """The first metaschema violation of ``schema`` under validator class ``cls`` (None when valid)."""
    return next(cls(cls.META_SCHEMA).iter_errors(schema), None)


def check_schema(schema: Any, *, draft: str | None = None) -> None:
    """Raise ``SchemaError`` (with the pointer of the offending keyword) when ``schema`` violates the
    metaschema of its draft: ``$schema`` if it names one, else ``draft``, else 2020-12 or an older draft.

    Raises
    ------
    SchemaError
        A keyword of the wrong type or out of its range (``"minLength": -1``, ``"required": "a"``).
    """
    if not isinstance(schema, dict):
        return  # booleans are schemas; anything else the caller refuses itself
    import jsonschema
    from jsonschema.validators import validator_for

    if "$schema" in schema and isinstance(schema["$schema"], str):
        cls = validator_for(schema, default=None)
        if cls is None:
            return  # an unknown $schema: dialects.py refuses it by pointer
    elif draft is not None and draft in _VALIDATORS:
        cls = getattr(jsonschema, _VALIDATORS[draft])
    else:
        cls = jsonschema.Draft202012Validator
    try:
        errors = list(itertools.islice(cls(cls.META_SCHEMA).iter_errors(schema), _MAX_ERRORS))
        if not errors:
            return
        if cls is jsonschema.Draft202012Validator and "$schema" not in schema and draft is None \
                and all(_keyword(e) in _OLD_FORMS for e in errors):
            if any(_first_error(getattr(jsonschema, name), schema) is None for name in _DEFAULT_TRIES):
                return
    except RecursionError:  # nested past what the checker can walk: the converter's own limits decide
        return
    first = errors[0]
    where = "/" + "/".join(_escape(p) for p in first.absolute_path)
    message = first.message if len(first.message) <= 200 else first.message[:200] + "..."
    raise SchemaError(f"invalid schema: {message}", pointer="" if where == "/" else where)


def _keyword(error: Any) -> str | None:
    """The schema keyword whose value a metaschema error is about (the last step of its path)."""
    path = list(error.absolute_path)
    return path[-1] if path and isinstance(path[-1], str) else None
