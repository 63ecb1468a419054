"""Hopeless constraints are refused by a linear walk (413 with a pointer) before any compile work."""
from __future__ import annotations

import pytest

from lightllm_struct.engine.constraint_limits import ConstraintLimits, check_limits
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.request import Constraint

LIMITS = ConstraintLimits(max_spec_bytes=10_000, max_choices=10, max_enum_values=5, max_schema_depth=8,
                          max_schema_nodes=50)


def _nested(depth: int) -> dict:
    schema: dict = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize("constraint, needle", [
    (Constraint("choice", ["x" * 2000] * 6), "size in bytes"),
    (Constraint("choice", [str(i) for i in range(11)]), "number of choices"),
    (Constraint("regex", "a" * 10_001), "size in bytes"),
    (Constraint("json_schema", {"properties": {"c": {"enum": list(range(6))}}}), "at /properties/c/enum"),
    (Constraint("json_schema", _nested(8)), "schema nesting"),
    (Constraint("json_schema", {"properties": {f"p{i}": {"type": "integer"} for i in range(60)}}), "object count"),
    (Constraint("json_schema", _nested(5000)), "nests too deeply"),
])
def test_over_a_limit_is_grammar_too_complex_413(constraint, needle):
    with pytest.raises(GrammarTooComplex) as err:
        check_limits(constraint, LIMITS)
    assert needle in err.value.message and err.value.http_status == 413


@pytest.mark.parametrize("constraint", [
    Constraint("choice", ["yes", "no"]), Constraint("regex", r"\d+"), Constraint("json_schema", _nested(3)),
    Constraint("json_schema", '{"type": "object"}'), Constraint("json_object"), Constraint("lark", 'start: "a"')])
def test_ordinary_constraints_pass(constraint):
    check_limits(constraint, LIMITS)


@pytest.mark.parametrize("grammar", ['%import .secret.X\nstart: X', '  %import os.path (X)\nstart: X',
                                     '%import ..up.X\nstart: X', 'start: X\n%import /etc/passwd'])
def test_lark_import_of_anything_but_the_bundled_grammars_is_refused_without_reading_files(grammar, tmp_path,
                                                                                          monkeypatch):
    from lightllm_struct.grammar.errors import GrammarSyntaxError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret.lark").write_text("X: /s3cret/\n")
    with pytest.raises(GrammarSyntaxError) as err:
        check_limits(Constraint("lark", grammar), LIMITS)
    assert "bundled" in err.value.message and "s3cret" not in err.value.message


def test_lark_import_of_common_passes():
    check_limits(Constraint("lark", "%import common.INT\n%import common (WS, LETTER)\nstart: INT"), LIMITS)
