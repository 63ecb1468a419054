"""Every draft read with its own semantics (dialects.py), checked against jsonschema's validator of that draft."""
from __future__ import annotations

import jsonschema
import pytest

from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from lightllm_struct.grammar.json_schema.dialects import normalize
from tests.grammar.json_schema.helpers import SchemaGrammar, compact

D4 = "http://json-schema.org/draft-04/schema#"
D7 = "http://json-schema.org/draft-07/schema#"


def test_draft4_boolean_exclusive_bounds_and_id():
    g = SchemaGrammar({"$schema": D4, "id": "http://example.com/root.json", "type": "object",
                       "properties": {"n": {"type": "integer", "minimum": 0, "exclusiveMinimum": True,
                                            "maximum": 5, "exclusiveMaximum": False},
                                      "r": {"$ref": "#/definitions/r"}},
                       "definitions": {"r": {"type": "string", "maxLength": 2}}})
    for value in ({"n": 0}, {"n": 1}, {"n": 5}, {"n": 6}, {"r": "ab"}, {"r": "abc"}, {"n": 3, "r": ""}):
        g.check(value)


def test_tuple_items_and_additional_items_in_drafts_4_to_2019():
    for uri in (D4, D7, "https://json-schema.org/draft/2019-09/schema"):
        g = SchemaGrammar({"$schema": uri, "type": "array", "items": [{"type": "integer"}, {"type": "string"}],
                           "additionalItems": False})
        for value in ([], [1], [1, "a"], [1, "a", 2], ["a"], [1, 2]):
            g.check(value)
        open_tail = SchemaGrammar({"$schema": uri, "items": [{"type": "integer"}]})
        for value in ([1, "x", None], ["x"]):
            open_tail.check(value)


def test_ref_overrides_its_siblings_before_2019_and_not_after():
    schema = {"$defs": {"i": {"type": "integer"}}, "$ref": "#/$defs/i", "maximum": 3}
    old = SchemaGrammar({"$schema": D7, **schema})
    assert old.check(10)  # draft-07: "maximum" next to "$ref" is ignored
    new = SchemaGrammar(schema)
    assert not new.check(10)


def test_dependencies_are_dependent_required_and_schemas():
    out = normalize({"$schema": D7, "dependencies": {"a": ["b"], "c": {"required": ["d"]}}})
    assert out["dependentRequired"] == {"a": ["b"]} and out["dependentSchemas"] == {"c": {"required": ["d"]}}


def test_keywords_a_draft_lacks_are_annotations_there():
    """draft-04 has no const: there it is an unknown keyword, so any instance."""
    assert SchemaGrammar({"$schema": D4, "type": "integer", "const": 3}).check(4)
    assert not SchemaGrammar({"$schema": D7, "type": "integer", "const": 3}).check(4)


def test_old_forms_without_schema_keep_their_only_meaning():
    """Judged by the draft-04 validator: 2020-12 has no reading of these forms."""
    for schema, values in (({"type": "number", "maximum": 2, "exclusiveMaximum": True, "id": "urn:x"}, (1.5, 2, 3)),
                           ({"type": "array", "items": [{"type": "null"}], "additionalItems": {"type": "boolean"}},
                            ([None], [None, True], [None, 1], [True]))):
        g = SchemaGrammar(schema)
        for value in values:
            assert g.accepts(compact(value)) == jsonschema.Draft4Validator(schema).is_valid(value), value


def test_unknown_keywords_are_ignored_unless_strict():
    schema = {"type": "object", "properties": {"a": {"type": "string", "x-ui": 1, "links": [{"rel": "self"}]}},
              "self": {"vendor": "v"}, "version": 2}
    g = SchemaGrammar(schema)
    for value in ({"a": "s"}, {"a": 1}, {}):
        g.check(value)
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark(schema, strict=True)
    assert err.value.pointer in ("/properties/a/links", "/self")


def test_recursive_and_dynamic_refs_with_one_anchor_are_refs():
    tree = {"$schema": "https://json-schema.org/draft/2019-09/schema", "$recursiveAnchor": True,
            "type": "object", "properties": {"kids": {"type": "array", "items": {"$recursiveRef": "#"}}},
            "additionalProperties": False}
    g = SchemaGrammar(tree)
    for value in ({"kids": [{"kids": []}]}, {"kids": [{"kids": [1]}]}, {"kids": [{"x": 1}]}):
        g.check(value)
    dyn = SchemaGrammar({"$dynamicAnchor": "node", "type": "array", "items": {"$dynamicRef": "#node"},
                         "maxItems": 2})
    for value in ([[], [[]]], [[1]], [[], [], []]):
        dyn.check(value)


def test_dynamic_refs_with_several_anchors_are_refused():
    schema = {"$dynamicAnchor": "n", "items": {"$dynamicRef": "#n"},
              "$defs": {"o": {"$id": "other", "$dynamicAnchor": "n", "type": "integer"}}}
    with pytest.raises(UnsupportedSchemaFeature) as err:
        json_schema_to_lark(schema)
    assert err.value.pointer == "/items/$dynamicRef"


@pytest.mark.parametrize("schema, values", [
    ({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}, {"$ref": "#/items/0"}]},
     [[1, 2], [1, "a"], ["a"], [1, 2, "x"], []]),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{}], "additionalItems": {"type": "string"},
      "properties": {"a": {"$ref": "#/additionalItems"}}}, [["x", "y"], ["x", 1], {"a": "s"}, {"a": 1}]),
    ({"$schema": "http://json-schema.org/draft-07/schema#", "dependencies": {"a": {"required": ["b"]}},
      "properties": {"c": {"$ref": "#/dependencies/a"}}}, [{"c": {"b": 1}}, {"c": {}}, {"a": 1, "b": 2}, {"a": 1}]),
])
def test_pointers_into_rewritten_legacy_keywords_resolve(schema, values):
    # dialects.py rewrites tuple items, additionalItems and dependencies into 2020-12 keywords; a $ref written
    # against the old names still finds its subschema (refs._legacy_name)
    g = SchemaGrammar(schema)
    for value in values:
        g.check(value)


def test_a_dollar_id_in_a_draft4_schema_is_an_annotation():
    # "$id" is no draft-04 keyword: "#/definitions/..." still resolves against the document, not the subschema
    schema = {"$schema": "http://json-schema.org/draft-04/schema#", "$id": "https://x.invalid/base.json",
              "definitions": {"path": {"type": "string"},
                              "nullable-path": {"$id": "nullable-path", "oneOf": [{"$ref": "#/definitions/path"},
                                                                                  {"type": "null"}]}},
              "properties": {"p": {"$ref": "#/definitions/nullable-path"}}}
    g = SchemaGrammar(schema)
    for value in ({"p": "a"}, {"p": None}, {"p": 1}, {}):
        g.check(value)


def test_an_id_of_a_json_pointer_fragment_names_no_anchor():
    # draft 4-7 schemas in the wild write "id": "#/definitions/x" (the node's own place): not a plain-name
    # anchor, so no anchor at all (jsonschema ignores it too), and the schema still compiles
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              "definitions": {"name": {"$id": "#/definitions/name", "type": "string", "maxLength": 3}},
              "properties": {"name": {"$ref": "#/definitions/name"}}}
    g = SchemaGrammar(schema)
    for value in ({"name": "abc"}, {"name": "abcd"}, {"name": 1}, {}):
        g.check(value)
