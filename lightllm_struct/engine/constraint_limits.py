"""Size limits a constraint must meet before any expensive compile work starts (413 with a pointer).

The walk is linear in the constraint's size and runs in the compile worker, first thing: a hopeless
constraint (a 700 KB choice list that would take 13 GB to compile, 10,000 properties, nesting 1,000 deep)
is refused in milliseconds instead of running into the deadline or the memory cap.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from lightllm_struct.grammar.errors import GrammarSyntaxError, GrammarTooComplex

# Lark's own bundled grammars: the only ones ``%import`` may name. Anything else would make lark read a file
# (relative to the working directory), and its error would tell the client whether that file exists.
_BUNDLED = ("common", "unicode", "lark", "python")
_IMPORT = re.compile(r"^[ \t]*%import[ \t]+([^\s(]*)", re.M)
from lightllm_struct.request import Constraint


@dataclass(frozen=True, kw_only=True)
class ConstraintLimits:
    """Attributes
    ----------
    max_spec_bytes:
        The constraint's text (schema JSON, regex, grammar, all choices together), in UTF-8 bytes.
    max_choices, max_enum_values:
        Entries of a choice list, and of one schema ``enum``.
    max_schema_depth, max_schema_nodes:
        Nesting of JSON values in a schema, and the number of objects (subschemas) in it.
    """

    max_spec_bytes: int = 1 << 20
    max_choices: int = 4096
    max_enum_values: int = 4096
    max_schema_depth: int = 64
    max_schema_nodes: int = 20_000


def constraint_limits(config: Any) -> ConstraintLimits:
    """The limits of an ``EngineConfig`` (its ``grammar_max_*`` fields)."""
    return ConstraintLimits(max_spec_bytes=config.grammar_max_spec_bytes, max_choices=config.grammar_max_choices,
                            max_enum_values=config.grammar_max_enum_values,
                            max_schema_depth=config.grammar_max_schema_depth,
                            max_schema_nodes=config.grammar_max_schema_nodes)


def _too_big(what: str, value: int, limit: int, pointer: str = "") -> GrammarTooComplex:
    where = f" (at {pointer or '/'})" if pointer or what.startswith("schema") else ""
    return GrammarTooComplex(f"the constraint is too large to compile: {what} is {value}, the limit is "
                             f"{limit}{where}")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _check_schema(schema: Any, limits: ConstraintLimits) -> None:
    nodes = 0
    stack = [(schema, "", 0)]
    while stack:
        value, pointer, depth = stack.pop()
        if depth > limits.max_schema_depth:
            raise _too_big("schema nesting", depth, limits.max_schema_depth, pointer)
        if isinstance(value, dict):
            nodes += 1
            if nodes > limits.max_schema_nodes:
                raise _too_big("schema object count", nodes, limits.max_schema_nodes, pointer)
            enum = value.get("enum")
            if isinstance(enum, list) and len(enum) > limits.max_enum_values:
                raise _too_big("enum size", len(enum), limits.max_enum_values, pointer + "/enum")
            stack.extend((v, f"{pointer}/{_escape(str(k))}", depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{pointer}/{i}", depth + 1) for i, v in enumerate(value))


def check_limits(constraint: Constraint, limits: ConstraintLimits) -> None:
    """Refuse ``constraint`` if it is over ``limits``.

    Raises
    ------
    GrammarTooComplex
        Naming the limit, the value, and for schemas the JSON pointer of the offending place.
    GrammarSyntaxError
        A Lark ``%import`` of anything but lark's bundled grammars (no file is ever read).
    """
    spec = constraint.spec
    if constraint.kind == "choice":
        if len(spec) > limits.max_choices:
            raise _too_big("the number of choices", len(spec), limits.max_choices)
        size = sum(len(c.encode("utf-8", "surrogatepass")) for c in spec)
    elif isinstance(spec, str):
        size = len(spec.encode("utf-8", "surrogatepass"))
    else:
        try:
            size = len(json.dumps(spec, default=str)) if spec is not None else 0
        except RecursionError:
            raise GrammarTooComplex("the constraint nests too deeply to compile") from None
    if size > limits.max_spec_bytes:
        raise _too_big("its size in bytes", size, limits.max_spec_bytes)
    if constraint.kind == "lark":
        for m in _IMPORT.finditer(spec):
            if m.group(1).split(".")[0] not in _BUNDLED:
                line = spec.count("\n", 0, m.start()) + 1
                raise GrammarSyntaxError(f"line {line}: %import may only name lark's bundled grammars "
                                         f"({', '.join(_BUNDLED)}), not {m.group(1)[:60]!r}")
    if constraint.kind == "json_schema":
        schema = spec
        if isinstance(spec, str):
            try:
                schema = json.loads(spec)
            except (ValueError, RecursionError):
                return  # the compiler reports the malformed schema with its position
        _check_schema(schema, limits)
