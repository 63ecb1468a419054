"""Property tests of the frontend, with lark driving the grammar and jsonschema as the judge.

Soundness: random derivations of the grammar (a random shiftable terminal each step, its text drawn from the
terminal's regex) always give instances jsonschema accepts. Completeness: instances drawn from the schema (a
small generator for the keywords used here: hypothesis-jsonschema's object strategy does not run on this
hypothesis version), checked valid by jsonschema, keys in schema order, compact, are always accepted.
"""
from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from lark.lexer import Token

from tests.grammar.json_schema.accept import accepts, lalr_parser
from tests.grammar.json_schema.helpers import compact
from lightllm_struct.grammar.json_schema import json_schema_to_lark

SCHEMAS = {
    "person": {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", 3]}, "maxItems": 3},
        "score": {"type": "number", "exclusiveMinimum": -1.5, "maximum": 99.25}},
        "required": ["name", "age"], "additionalProperties": False},
    "open": {"type": "object", "properties": {"id": {"type": "integer", "exclusiveMaximum": -3}},
             "additionalProperties": {"type": ["boolean", "null"]}},
    "mixed": {"anyOf": [{"type": "string", "pattern": "^[a-c]{2}x?$"}, {"type": "integer", "minimum": 10},
                        {"type": "array", "prefixItems": [{"const": 1}, {"type": "string", "maxLength": 1}],
                         "items": False}]},
    "tree": {"$defs": {"n": {"type": "object", "properties": {"v": {"type": "integer"},
                                                             "k": {"type": "array", "items": {"$ref": "#/$defs/n"},
                                                                   "maxItems": 2}},
                             "required": ["v"], "additionalProperties": False}}, "$ref": "#/$defs/n"},
    "dates": {"type": "array", "items": {"type": "string", "format": "date-time"}, "minItems": 1, "maxItems": 2},
}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.generate, Phase.target])  # no shrinking: slow on 2 cores


def _strategy(schema, defs, depth: int = 0):
    """Instances of the schema subset used above (keys generated in schema order)."""
    if "$ref" in schema:
        return _strategy(defs[schema["$ref"].rsplit("/", 1)[1]], defs, depth + 1)
    if "enum" in schema or "const" in schema:
        return st.sampled_from(schema.get("enum", [schema.get("const")]))
    if "anyOf" in schema:
        return st.one_of([_strategy(s, defs, depth) for s in schema["anyOf"]])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([_strategy({**schema, "type": k}, defs, depth) for k in kind])
    return _SCALARS[kind](schema) if kind in _SCALARS else _container(kind, schema, defs, depth)


def _container(kind: str, schema, defs, depth: int):
    if kind == "array":
        if "prefixItems" in schema:
            return st.tuples(*[_strategy(s, defs, depth + 1) for s in schema["prefixItems"]]).map(list)
        if depth > 3:  # keeps recursive schemas finite
            return st.just([])
        hi = schema.get("maxItems", 3)
        return st.lists(_strategy(schema["items"], defs, depth + 1), min_size=min(schema.get("minItems", 0), hi),
                        max_size=hi)
    props, required = schema.get("properties", {}), set(schema.get("required", []))
    fields = {k: _strategy(v, defs, depth + 1) for k, v in props.items()}
    extra = schema.get("additionalProperties", False)
    extras = st.dictionaries(st.text(min_size=1, max_size=4).filter(lambda k: k not in props),
                             _strategy(extra, defs, depth + 1), max_size=2) if extra else st.just({})

    @st.composite
    def build(draw):
        out = {k: draw(f) for k, f in fields.items() if k in required or draw(st.booleans())}
        out.update(draw(extras))
        return out

    return build()


_SCALARS = {
    "null": lambda s: st.none(),
    "boolean": lambda s: st.booleans(),
    "integer": lambda s: st.integers(s.get("minimum", s.get("exclusiveMinimum", -10**6 - 1) + 1),
                                     s.get("maximum", s.get("exclusiveMaximum", 10**6 + 1) - 1)),
    "number": lambda s: st.floats(s.get("exclusiveMinimum", s.get("minimum", -1e6)), s.get("maximum", 1e6),
                                  exclude_min="exclusiveMinimum" in s).map(lambda x: round(x, 3) + 0.0),  # no -0.0
    "string": lambda s: _string(s),
}


def _string(schema):
    if "pattern" in schema:
        # Python's "$" also matches before a final newline; the grammar reads "$" as ECMA-262 does (sound).
        return st.from_regex(schema["pattern"]).filter(lambda x: not x.endswith("\n"))
    if schema.get("format") == "email":
        return st.from_regex(r"[a-z0-9]{1,5}(\.[a-z]{1,3})?@[a-z]{1,5}\.(com|org)", fullmatch=True)
    if schema.get("format") == "date-time":
        return st.datetimes().map(lambda d: d.isoformat() + "Z")
    return st.text(min_size=schema.get("minLength", 0), max_size=schema.get("maxLength", 12))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_completeness_on_generated_instances(name):
    schema = SCHEMAS[name]
    parser = lalr_parser(json_schema_to_lark(schema))

    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    @SETTINGS
    @given(_strategy(schema, schema.get("$defs", {})))
    def check(value):
        assume(validator.is_valid(value))
        text = compact(value)
        assert accepts(parser, text), text

    check()


def _derive(parser, data, max_steps: int = 120) -> str:
    state = parser.parse_interactive("")
    regex = {t.name: t.pattern.to_regexp() for t in parser.terminals}
    out = []
    for step in range(max_steps):
        choices = sorted(state.accepts())
        if choices == ["$END"] or "$END" in choices and (step > 10 or data.draw(st.booleans())):
            return "".join(out)
        closing = [c for c in choices if c in ("RBRACE", "RBRACK")]
        names = [c for c in choices if c != "$END"]
        pick = closing[0] if closing and step > 40 else data.draw(st.sampled_from(names))
        text = data.draw(st.from_regex(regex[pick], fullmatch=True).filter(lambda s: len(s) < 40))
        state.feed_token(Token(pick, text))
        out.append(text)
    assume(False)
    return ""


@pytest.mark.parametrize("name,whitespace", [(n, "compact") for n in sorted(SCHEMAS)]
                         + [("person", "flexible"), ("tree", "flexible")])
def test_soundness_of_random_derivations(name, whitespace):
    schema = SCHEMAS[name]
    parser = lalr_parser(json_schema_to_lark(schema, whitespace=whitespace))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    @settings(SETTINGS, max_examples=15)
    @given(st.data())
    def check(data):
        text = _derive(parser, data)
        value = json.loads(text)
        assert validator.is_valid(value), text

    check()
