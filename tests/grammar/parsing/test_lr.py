"""LR tables: the tables the JSON-schema check leaves behind are the ones lark builds from the text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightllm_struct.grammar.parsing import lr
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.json_schema import json_schema_to_lark

SCHEMAS = Path(__file__).resolve().parents[3] / "benchmarks" / "schemas"


@pytest.mark.parametrize("name", ["invoice", "recursive_tree", "shapes_oneof", "free_json_object"])
def test_tables_left_by_the_schema_check_equal_larks_own(name):
    schema = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))["schema"]
    text = json_schema_to_lark(schema)
    with lr._TABLES_LOCK:
        remembered, _ = lr._TABLES.pop(text)
    fresh = lr.build_lr_tables(text)  # not in the cache any more: lark analyses the text itself
    assert fresh is not remembered
    assert fresh.terminals == remembered.terminals and fresh.ignore == remembered.ignore
    _assert_isomorphic(fresh, remembered)  # lark numbers states and rules in no fixed order


def _assert_isomorphic(a: lr.LRTables, b: lr.LRTables) -> None:
    """Walk both automata from their start states in step; states, rules and nonterminals must pair up."""
    state_of = {a.start_state: b.start_state}
    nonterm_of: dict[int, int] = {}
    todo = [a.start_state]
    while todo:
        sa = todo.pop()
        sb = state_of[sa]
        assert a.actions[sa].keys() == b.actions[sb].keys()
        pairs = []
        for term, (kind, arg) in a.actions[sa].items():
            kind_b, arg_b = b.actions[sb][term]
            assert kind == kind_b
            if kind == lr.SHIFT:
                pairs.append((arg, arg_b))
            else:
                (origin, length), (origin_b, length_b) = a.rules[arg], b.rules[arg_b]
                assert length == length_b and nonterm_of.setdefault(origin, origin_b) == origin_b
        for nonterm, dest in a.gotos[sa].items():
            if nonterm in nonterm_of:  # nonterminals pair up through the rules that reduce to them
                pairs.append((dest, b.gotos[sb][nonterm_of[nonterm]]))
        for da, db in pairs:
            if da not in state_of:
                state_of[da] = db
                todo.append(da)
            assert state_of[da] == db
    assert len(set(state_of.values())) == len(state_of)
    assert state_of.get(a.end_state, b.end_state) == b.end_state
