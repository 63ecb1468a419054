"""The shorthand constraint arguments (``schema=``, ``regex=``, ``grammar=``, ``choices=``) as one
:class:`~lightllm_struct.request.Constraint`: what ``generate()`` and ``LLM.generate()`` both take."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.request import Constraint


def is_model_class(obj: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(obj, type) and issubclass(obj, BaseModel)


def to_constraint(*, schema: Any = None, regex: str | None = None, grammar: str | None = None,
                  choices: Sequence[str] | None = None) -> Constraint | None:
    """The Constraint of at most one of the arguments, or None.

    Parameters
    ----------
    schema:
        A JSON schema (dict or JSON string) or a pydantic model class (its objects closed, see ``_closed``).
    regex, grammar, choices:
        A regular expression, a Lark grammar, or a list of allowed strings.

    Raises
    ------
    InvalidRequestError
        More than one argument, or a schema that is neither a dict, JSON text nor a pydantic class.
    """
    given = [name for name, v in (("schema", schema), ("regex", regex), ("grammar", grammar),
                                  ("choices", choices)) if v is not None]
    if len(given) > 1:
        raise InvalidRequestError(f"give at most one of schema, regex, grammar, choices (got {given})")
    if schema is not None:
        return Constraint("json_schema", _schema_dict(schema))
    if regex is not None:
        return Constraint("regex", regex)
    if grammar is not None:
        return Constraint("lark", grammar)
    if choices is not None:
        return Constraint("choice", list(choices))
    return None


def _closed(node: Any) -> Any:
    """Copy of a schema whose objects admit no keys beyond their ``properties`` unless they say otherwise."""
    if isinstance(node, list):
        return [_closed(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _closed(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out and "patternProperties" not in out:
        out["additionalProperties"] = False
    return out


def _schema_dict(schema: Any) -> Any:
    if is_model_class(schema):
        # Pydantic drops unknown keys when parsing, so letting the model write them only wastes tokens (and
        # invites small models to wander off into extra keys until max_tokens): close the objects.
        return _closed(schema.model_json_schema())
    if isinstance(schema, str):
        try:
            return json.loads(schema)
        except json.JSONDecodeError as exc:
            raise InvalidRequestError(f"schema is a string but not JSON: {exc}", param="schema") from None
    if isinstance(schema, (dict, bool)):
        return schema
    raise InvalidRequestError(f"schema must be a dict, a JSON string or a pydantic model class, "
                              f"got {type(schema).__name__}", param="schema")
