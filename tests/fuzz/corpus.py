"""Hostile and random constraints for the compile fuzz harness (the CI slice and ``benchmarks/fuzz_bench.py``).

Three sources: pathological constraints from issue 11's probe (deep nesting, 10k properties, huge enums,
ReDoS patterns, recursive ``$ref`` without a base case, wrong types everywhere), the JSONSchemaBench dev
corpus mutated at random, and schemas drawn by a hypothesis strategy. Every constraint must end, within its
deadline, in a grammar or a typed error.
"""
from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from lightllm_struct.request import Constraint

WRONG_VALUES = [5, -1, 1.5, "x", "", None, True, [], {}, [1, "a"], {"type": 3}, "#/nope", 10**30]
KEYWORDS = ["type", "properties", "items", "required", "enum", "const", "minLength", "maxLength", "pattern",
            "minimum", "maximum", "anyOf", "oneOf", "allOf", "$ref", "additionalProperties", "format",
            "minItems", "maxItems", "prefixItems", "not", "if", "then", "$defs", "uniqueItems", "multipleOf"]
REDOS = [r"(a+)+$", r"(a|a)*b", r"(x{0,300}){0,300}", r"(.*a){20}", r"((ab)*)*c", r"(a|b|ab)*bc",
         r"(\w+\s?)*$", r"^(([a-z])+.)+[A-Z]([a-z])+$", r"(a{1,1000}){1,1000}"]


def _nested(depth: int, kind: str) -> dict:
    schema: dict = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema} if kind == "array" else \
            {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def pathological() -> list[tuple[str, Constraint]]:
    """Named constraints that once killed, froze or starved a server (or would)."""
    js = lambda s: Constraint("json_schema", s)  # noqa: E731
    cases = [
        ("deep arrays 200", js(_nested(200, "array"))),
        ("deep objects 100", js(_nested(100, "object"))),
        ("deep arrays 5000", js(_nested(5000, "array"))),
        ("10k properties", js({"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(10_000)}})),
        ("600 optional integers", js({"type": "object",
                                      "properties": {f"field_{i}": {"type": "integer"} for i in range(600)}})),
        ("enum 100k", js({"enum": list(range(100_000))})),
        ("enum 3k strings", js({"enum": [f"value-{i}" for i in range(3000)]})),
        ("recursive ref no base", js({"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]})),
        ("ref cycle", js({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"})),
        ("ref to a file", js({"$ref": "file:///etc/passwd"})),
        ("ref to the network", js({"$ref": "http://127.0.0.1:9/schema.json"})),
        ("huge maxLength", js({"type": "string", "minLength": 10**9})),
        ("choice 2x700KB", Constraint("choice", ["x" * 700_000, "y" * 700_000])),
        ("choice 5000", Constraint("choice", [f"c{i}" for i in range(5000)])),
        ("lark left recursion only", Constraint("lark", 'start: start "a"')),
        ("lark %import file", Constraint("lark", '%import .secret.X\nstart: X')),
        ("lark %import common", Constraint("lark", '%import common.INT\nstart: INT')),
        ("empty class regex", Constraint("regex", r"[^\s\S]")),
    ]
    cases += [(f"redos {p}", Constraint("regex", p)) for p in REDOS]
    cases += [(f"pattern {p}", js({"type": "string", "pattern": p})) for p in REDOS[:4]]
    cases += [(f"wrong {k}={v!r:.20}", js({"type": "object", "properties": {"a": {k: v}}}))
              for k in KEYWORDS[:12] for v in WRONG_VALUES[:6]]
    return cases


def _subschemas(schema: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(schema, dict):
        yield path
        for k, v in schema.items():
            yield from _subschemas(v, path + (k,))
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            yield from _subschemas(v, path + (i,))


def mutate(schema: Any, rng: random.Random) -> Any:
    """One random mutation: a keyword set to a wrong-typed value, a subschema replaced, nested or made recursive."""
    schema = copy.deepcopy(schema)
    paths = list(_subschemas(schema)) or [()]
    path = rng.choice(paths)
    parent: Any = schema
    for p in path:
        parent = parent[p]
    if not isinstance(parent, dict):
        return schema
    move = rng.randrange(5)
    if move == 0:
        parent[rng.choice(KEYWORDS)] = rng.choice(WRONG_VALUES)
    elif move == 1 and parent:
        parent.pop(rng.choice(list(parent)))
    elif move == 2:
        parent["items"] = copy.deepcopy(parent)
    elif move == 3:
        parent["anyOf"] = [{"$ref": "#"}, {"type": rng.choice(["string", "null", "integer"])}]
    else:
        parent["$ref"] = rng.choice(["#", "#/properties", "#/$defs/missing", "#/definitions/x", "#/items/0"])
    return schema


def corpus_schemas(root: Path) -> list[Any]:
    out = []
    for path in sorted(root.glob("*.json")):
        try:
            out.append(json.loads(path.read_text())["schema"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def mutated(schemas: list[Any], n: int, seed: int) -> Iterator[tuple[str, Constraint]]:
    rng = random.Random(seed)
    for i in range(n):
        schema = rng.choice(schemas)
        for _ in range(rng.randint(1, 3)):
            schema = mutate(schema, rng)
        yield f"mutated {i}", Constraint("json_schema", schema)


_leaf = st.fixed_dictionaries({"type": st.sampled_from(["string", "integer", "number", "boolean", "null"])},
                              optional={"enum": st.lists(st.integers(-5, 5) | st.text(max_size=4), max_size=5),
                                        "minLength": st.integers(-2, 50), "maxLength": st.integers(-2, 3000),
                                        "minimum": st.integers(-10, 10), "pattern": st.sampled_from(REDOS + ["[a-z]+"]),
                                        "format": st.sampled_from(["date", "email", "uuid", "nope", 3])})


def _node(children: st.SearchStrategy) -> st.SearchStrategy:
    names = st.text("abcxyz_", min_size=1, max_size=6)
    return st.one_of(
        st.fixed_dictionaries({"type": st.just("object"), "properties": st.dictionaries(names, children, max_size=6)},
                              optional={"required": st.lists(names, max_size=4),
                                        "additionalProperties": st.booleans() | children}),
        st.fixed_dictionaries({"type": st.just("array"), "items": children},
                              optional={"minItems": st.integers(-1, 5), "maxItems": st.integers(0, 400)}),
        st.builds(lambda xs: {"anyOf": xs}, st.lists(children, min_size=1, max_size=3)),
        st.just({"$ref": "#"}),
        st.sampled_from(WRONG_VALUES),
    )


SCHEMAS = st.recursive(_leaf, _node, max_leaves=12)
