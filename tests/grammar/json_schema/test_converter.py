"""json_schema_to_lark: objects, arrays, combinators, references, errors, whitespace."""
from __future__ import annotations

import itertools
import json

import pytest

from lightllm_struct.grammar.errors import SchemaError, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import any_json_lark, json_schema_to_lark
from tests.grammar.json_schema.accept import accepts, lalr_parser
from tests.grammar.json_schema.helpers import SchemaGrammar, assert_well_formed, compact

OBJ = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}, "c": {"type": "boolean"},
                                        "d": {"type": "null"}}, "required": ["a", "c"]}
VALUES = {"a": 1, "b": "x", "c": True, "d": None}


@pytest.mark.parametrize("additional", [True, False, {"type": "integer"}])
def test_every_subset_of_properties_in_schema_order_and_extras_anywhere(additional):
    g = SchemaGrammar({**OBJ, "additionalProperties": additional})
    keys = list(VALUES)
    for n in range(len(keys) + 1):
        for subset in itertools.combinations(keys, n):
            obj = {k: VALUES[k] for k in subset}
            g.check(obj)
            for pos in range(len(subset) + 1):  # an extra key at every position
                items = list(obj.items())
                g.check(dict(items[:pos] + [("zz", 5)] + items[pos:]))
                g.check(dict(items[:pos] + [("zz", "s")] + items[pos:]))
    for bad in ['{"a":1,"c":true,}', '{,"a":1,"c":true}', '{"a":1,,"c":true}', '{"a":1"c":true}',
                '{"a":1,"c":true,"a":2}', '{"a":"1","c":true}']:
        assert not g.accepts(bad), bad


def test_known_properties_out_of_schema_order_are_the_documented_restriction():
    g = SchemaGrammar(OBJ)
    assert g.accepts('{"a":1,"c":true}')
    assert not g.check({"c": True, "a": 1}, complete=False)


def test_grammar_stays_linear_in_the_number_of_optional_properties():
    props = {f"p{i}": {"type": "integer"} for i in range(60)}
    text = json_schema_to_lark({"type": "object", "properties": props, "additionalProperties": False})
    assert text.count("\n") < 60 * 12
    parser = lalr_parser(text)
    assert accepts(parser, '{"p3":1,"p17":2,"p59":3}') and accepts(parser, "{}")
    assert not accepts(parser, '{"p17":2,"p3":1}')


def test_required_key_without_property_schema_uses_additional_properties():
    g = SchemaGrammar({"required": ["x"], "additionalProperties": {"type": "string"}})
    g.check({"x": "a"}), g.check({"x": 1}), g.check({}), g.check({"y": "b", "x": "a"})


def test_false_property_schema_forbids_the_key():
    g = SchemaGrammar({"properties": {"no": False}})
    g.check({"no": 1}), g.check({"yes": 1}), g.check({})


def test_arrays_prefix_items_and_bounds():
    g = SchemaGrammar({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                       "items": {"type": "boolean"}, "minItems": 1, "maxItems": 4})
    for value in ([], ["a"], ["a", 1], ["a", 1, True], ["a", 1, True, False], ["a", 1, True, False, True],
                  [1], ["a", "b"], ["a", 1, 2]):
        g.check(value)
    closed = SchemaGrammar({"prefixItems": [{"const": 1}], "items": False})
    closed.check([1]), closed.check([1, 2]), closed.check([]), closed.check("x")


def test_unbounded_array_tail_and_nesting():
    g = SchemaGrammar({"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2}})
    g.check([[1, 2], [3.5, -1e3, 0]]), g.check([[1]]), g.check([]), g.check([[1, 2], []])


def test_recursive_schema_through_defs():
    schema = {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                                  "kids": {"type": "array",
                                                                           "items": {"$ref": "#/$defs/node"}}},
                                 "required": ["v"], "additionalProperties": False}},
              "$ref": "#/$defs/node"}
    g = SchemaGrammar(schema)
    tree = {"v": 1, "kids": [{"v": 2}, {"v": 3, "kids": [{"v": 4, "kids": []}]}]}
    assert g.check(tree)
    g.check({"v": 1, "kids": [{"kids": []}]}), g.check({"v": 1, "kids": [{"v": "x"}]})


def test_recursive_root_reference_and_anchor():
    g = SchemaGrammar({"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#"}}]})
    assert g.check([1, [2, [3, []]]])
    g.check([1, ["x"]])
    anchored = SchemaGrammar({"$defs": {"s": {"$anchor": "str", "type": "string"}},
                              "properties": {"a": {"$ref": "#str"}}})
    anchored.check({"a": "x"}), anchored.check({"a": 1})


def test_enum_and_const_keep_only_values_valid_under_siblings():
    g = SchemaGrammar({"enum": [1, "a", 3, 2.5, None, {"k": [1]}], "type": ["integer", "object"], "minimum": 2})
    for value in (1, "a", 3, 2.5, None, {"k": [1]}, {"k": [2]}, 3.0):
        g.check(value)
    c = SchemaGrammar({"const": {"a": [1, "é\n"], "b": None}})
    assert c.check({"a": [1, "é\n"], "b": None})
    c.check({"a": [1, "é\n"], "b": 0})


def test_any_of_scalars_merge_into_one_terminal():
    g = SchemaGrammar({"anyOf": [{"type": "integer", "maximum": 5}, {"type": "integer", "minimum": 50},
                                 {"type": "string", "maxLength": 2}, {"const": "long string"}]})
    for value in (3, 5, 6, 49, 50, 500, "", "ab", "abc", "long string", None):
        g.check(value)


def test_one_of_disjoint_or_exactly_one():
    g = SchemaGrammar({"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "array"}]})
    g.check("x"), g.check(3), g.check(-3), g.check([1])
    SchemaGrammar({"oneOf": [{"type": "integer", "maximum": 0}, {"type": "integer", "minimum": 1}]}).check(1)
    # exactly one of them: integers below 2, and numbers >= 2 that are not integers (numbers.NON_INTEGRAL_VALUE)
    both = SchemaGrammar({"oneOf": [{"type": "integer"}, {"minimum": 2}]})
    for value in (1, -4, 2, 3, 2.5, 1.5, 0.5, 1e-05, 7.0, "x", None):
        both.check(value)
    with pytest.raises(UnsupportedSchemaFeature) as err:  # exactly one: the non-e-mails have no regex here
        json_schema_to_lark({"oneOf": [{"type": "string", "format": "email"}, {"maxLength": 5}]})
    assert err.value.pointer.startswith("/oneOf/")


def test_all_of_merges_and_cross_applies_additional_properties():
    g = SchemaGrammar({"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                                 {"properties": {"b": {"type": "string"}}, "additionalProperties": False}]})
    g.check({"a": 1}), g.check({"b": "x"}), g.check({"a": 1, "b": "x"})  # "a" is not allowed by the 2nd
    m = SchemaGrammar({"allOf": [{"type": ["integer", "string"]}, {"type": "integer", "maximum": 3}, {"minimum": 1}]})
    for value in (0, 1, 3, 4, "a"):
        m.check(value)


def test_overlapping_object_alternatives_are_disjoint_or_refused_with_the_pointer():
    from tests.grammar.json_schema.test_conditionals import _check

    # as disjoint alternatives (B1, B2 ∧ ¬B1: exclusive.first_match_branches), exact in some key order
    g = SchemaGrammar({"properties": {"x": {"anyOf": [{"type": "object", "properties": {"a": {"type": "integer"}}},
                                                      {"type": "object", "required": ["b"]}]}}})
    for x in ({}, {"a": 1}, {"a": "s"}, {"b": 1}, {"a": "s", "b": 1}, {"a": 1, "b": 1}, {"c": 1}, 1):
        _check(g, {"x": x})
    with pytest.raises(UnsupportedSchemaFeature) as err:  # the disjoint form needs ¬format (no regex here)
        json_schema_to_lark({"properties": {"x": {"anyOf": [
            {"type": "object", "properties": {"a": {"type": "string", "format": "email"}}},
            {"type": "object", "required": ["b"]}]}}})
    assert err.value.pointer == "/properties/x/anyOf"
    # branches that only ask which keys are present are one object with a presence condition (presence.py)
    g = SchemaGrammar({"properties": {"x": {"anyOf": [{"type": "object", "properties": {"a": {}}},
                                                      {"type": "object", "required": ["b"]}]}}})
    for value in ({"x": {}}, {"x": {"a": 1, "b": 2}}, {"x": 1}, {"x": {"b": 1, "c": 1}}):
        g.check(value)


def test_unevaluated_and_not_folding():
    g = SchemaGrammar({"properties": {"a": {}}, "allOf": [{"properties": {"b": {}}}],
                       "unevaluatedProperties": False})
    g.check({"a": 1, "b": 2}), g.check({"a": 1, "c": 2})
    n = SchemaGrammar({"not": {"type": ["string", "array"]}})
    for value in ("x", [1], 1, None, {"a": "x"}):
        n.check(value)


@pytest.mark.parametrize("schema,pointer,error", [
    ({"type": "strin"}, "/type", SchemaError),
    ({"properties": {"a": {"minLength": -1, "type": "string"}}}, "/properties/a/minLength", SchemaError),
    ({"properties": {"a~b/c": {"$ref": "#/$defs/missing"}}}, "/properties/a~0b~1c/$ref", SchemaError),
    ({"items": {"type": "number", "multipleOf": 0.123456789}}, "/items/multipleOf", UnsupportedSchemaFeature),
    ({"properties": {"x": {"uniqueItems": True, "type": "array"}}}, "/properties/x/uniqueItems",
     UnsupportedSchemaFeature),
    ({"patternProperties": {"^(?!a)": {}}}, "/patternProperties/^(?!a)", UnsupportedSchemaFeature),
    ({"anyOf": [{"$ref": "https://example.com/remote.json"}]}, "/anyOf/0/$ref", UnsupportedSchemaFeature),
    ({"if": {"format": "email"}, "then": {"maxLength": 9}}, "/if", UnsupportedSchemaFeature),  # ¬format
    ({"type": "string", "pattern": "(a"}, "/pattern", SchemaError),
    ({"enum": 3}, "/enum", SchemaError),
    (False, "", UnsupportedSchemaFeature),
])
def test_errors_name_the_json_pointer(schema, pointer, error):
    with pytest.raises(error) as err:
        json_schema_to_lark(schema)
    assert type(err.value) is error and err.value.pointer == pointer
    assert pointer in str(err.value) or pointer == ""


def test_schema_as_json_text_and_bad_text():
    assert_well_formed(json_schema_to_lark('{"type": "integer"}'))
    with pytest.raises(SchemaError):
        json_schema_to_lark("{not json")
    with pytest.raises(ValueError):
        json_schema_to_lark({}, whitespace="lots")


def test_annotations_ignored():
    g = SchemaGrammar({"title": "t", "description": "d", "default": 1, "examples": [1], "$comment": "c",
                       "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "integer"})
    g.check(1), g.check("1")


def test_flexible_whitespace_is_bounded():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}},
                                               "b": {"type": "object"}}}
    flex, strict = SchemaGrammar(schema, whitespace="flexible"), SchemaGrammar(schema)
    value = {"a": [1, 2], "b": {"x": [True, {"y": None}]}}
    for text in (json.dumps(value), json.dumps(value, indent=2), json.dumps(value, indent="\t"), compact(value)):
        assert flex.accepts(text), text
    assert not strict.accepts(json.dumps(value))
    assert not flex.accepts('{"a":' + " " * 50 + "[1]}")
    assert not flex.accepts('{"a":\n\n[1]}')


def test_any_json_grammars():
    obj, val = lalr_parser(any_json_lark()), lalr_parser(any_json_lark(root="value"))
    for text in ('{}', '{"a":[1,{"b":null}],"a":"dup"}', '{"x":-1.5e3,"y":"\\u00e9\\n"}'):
        assert accepts(obj, text) and accepts(val, text)
    for text in ('[1]', '"s"', '3'):
        assert not accepts(obj, text) and accepts(val, text)
    for text in ('{"a":1,}', "{'a':1}", '{"a" 1}', "[1 2]"):
        assert not accepts(val, text)
    assert json_schema_to_lark({"type": "object"}).count("json_object") >= 1


def test_strings_with_escapes_and_unicode_in_values():
    g = SchemaGrammar({"properties": {"s": {"type": "string", "minLength": 2, "maxLength": 3}}})
    for s in ("é😀", "\n\t", 'a"', "日本語", "日本語!", "x"):
        g.check({"s": s})
    assert g.accepts('{"s":"\\ud83d\\ude00\\u00e9"}') and not g.accepts('{"s":"\\ud83d\\ude00"}')


def test_one_of_discriminated_objects():
    shapes = {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
         "required": ["kind", "r"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
         "required": ["kind", "side"], "additionalProperties": False}]}
    g = SchemaGrammar({"type": "array", "items": shapes})
    g.check([{"kind": "circle", "r": 1}, {"kind": "square", "side": 2.5}])
    g.check([{"kind": "circle", "side": 1}]), g.check([{"kind": "triangle", "r": 1}])
    # no common required discriminator: exactly one (an object without "a" matches both, so it is invalid)
    g = SchemaGrammar({"oneOf": [{"type": "object", "properties": {"a": {"const": 1}}},
                                 {"type": "object", "properties": {"a": {"const": 2}}}]})
    for value in ({}, {"a": 1}, {"a": 2}, {"a": 3}, {"b": 1}, {"a": 1, "b": 2}):
        g.check(value)


def test_lengths_next_to_a_pattern_when_implied_or_one_repeat():
    g = SchemaGrammar({"type": "string", "pattern": "^[A-Z]{3}$", "minLength": 1, "maxLength": 3})
    g.check("ABC"), g.check("AB"), g.check("abc")
    g = SchemaGrammar({"type": "string", "pattern": "^[a-z]+$", "maxLength": 3})
    g.check("abc"), g.check("abcd"), g.check("")
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$", "maxLength": 40})
    assert err.value.pointer == "/maxLength"


def test_union_of_open_objects_starts_each_branch_with_its_first_required_property():
    a = {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]}
    b = {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "string"}},
         "required": ["kind", "y"]}
    for key in ("anyOf", "oneOf"):
        g = SchemaGrammar({key: [a, b]})
        for value in ({"kind": "a"}, {"kind": "a", "x": 1, "z": [2]}, {"kind": "b", "y": "s", "q": None},
                      {"kind": "b"}, {"kind": "a", "x": "s"}, {"kind": "c"}):
            g.check(value)
        assert not g.check({"z": 1, "kind": "a"}, complete=False)  # the documented restriction in unions


@pytest.mark.parametrize("uri", ["https://json-schema.org/draft/2020-12/schema",
                                 "http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2019-09/schema"])
def test_known_dialects_are_read(uri):
    SchemaGrammar({"$schema": uri, "type": "integer", "maximum": 3}).check(3)


def test_a_custom_metaschema_is_refused_not_misread():
    """A custom "$schema" may switch vocabularies off (the suite's no-validation metaschema): refused."""
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark({"$schema": "http://localhost:1234/draft2020-12/metaschema-no-validation.json",
                             "properties": {"n": {"minimum": 10}}})
    assert err.value.pointer == "/$schema"
    with pytest.raises(SchemaError):
        json_schema_to_lark({"$schema": 7})


def test_format_is_asserted_by_default_and_an_annotation_on_request():
    """Draft 2020-12 makes format an annotation; the engine asserts it unless told otherwise (a model should
    write a real e-mail address); a format it does not know is an annotation either way."""
    asserted = SchemaGrammar({"type": "string", "format": "email"})
    assert asserted.accepts(compact("a@b.co")) and not asserted.accepts(compact("2962"))
    annotated = lalr_parser(json_schema_to_lark({"type": "string", "format": "email"}, assert_formats=False))
    assert accepts(annotated, compact("2962")) and accepts(annotated, compact("a@b.co"))
    assert SchemaGrammar({"type": "string", "format": "color"}).accepts(compact("x"))
    unknown = lalr_parser(json_schema_to_lark({"type": "string", "format": "color"}, assert_formats=False))
    assert accepts(unknown, compact("x"))
