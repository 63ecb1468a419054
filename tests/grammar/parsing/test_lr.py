"""LR tables: the directly built LALR(1) tables (cfg.py + lalr.py) are the ones lark builds from the text."""
from __future__ import annotations

import json
from pathlib import Path

import lark
import pytest
from lark.common import ParserConf
from lark.load_grammar import load_grammar
from lark.parsers.lalr_analysis import LALR_Analyzer

from lightllm_struct.grammar.errors import GrammarConflictError, GrammarTooComplex, UnsupportedSchemaFeature
from lightllm_struct.grammar.json_schema import json_schema_to_lark
from lightllm_struct.grammar.parsing import lr
from lightllm_struct.grammar.parsing.cfg import read_lark_subset

SCHEMAS = Path(__file__).resolve().parents[3] / "benchmarks" / "schemas"
# Subset text with what the frontend writes: (x)* groups (shared when repeated), empty alternatives, left
# and right recursion, nullable chains, unused rules and terminals, \x22 escapes.
HANDWRITTEN = [
    "start: a\na: A (B a)* C\n    | \nA: /x/\nB: /,/\nC: /;/\n",
    "start: l\nl: l COMMA e\n    | e\ne: n n\nn: N\n    | \nunused: N\nCOMMA: /,/\nN: /[0-9]+/\nX: /never/\n",
    "start: o\no: LB (COMMA k)* RB\n    | LB k (COMMA k)* RB\nk: K\nLB: /\\{/\nRB: /\\}/\nCOMMA: /,/\nK: /\\x22k\\x22/\n",
]


def _lark(text: str, *, strict: bool) -> lr.LRTables:
    grammar, _ = load_grammar(text, "<test>", (), False)
    terminals, rules, ignore = grammar.compile(["start"], set())
    analyzer = LALR_Analyzer(ParserConf(rules, None, ["start"]), strict=strict)
    analyzer.compute_lalr()
    return lr.tables_from_analysis(terminals, ignore, analyzer.parse_table)


def _texts() -> list[str]:
    texts = list(HANDWRITTEN)
    for path in sorted(SCHEMAS.glob("*.json")):
        try:
            texts.append(json_schema_to_lark(json.loads(path.read_text(encoding="utf-8"))["schema"], check=False))
        except UnsupportedSchemaFeature:
            continue  # a benchmark schema the frontend refuses (coverage is another test's business)
    return texts


@pytest.mark.parametrize("text", _texts(), ids=lambda t: str(len(t)))
def test_direct_tables_are_larks(text):
    direct = lr.subset_tables(text, strict=False)
    assert direct is not None  # the frontend's text stays inside the subset
    theirs = _lark(text, strict=False)
    assert direct[0].terminals == theirs.terminals and direct[0].ignore == theirs.ignore
    _assert_isomorphic(direct[0], theirs)
    _assert_isomorphic(theirs, direct[0])


def test_the_schema_check_leaves_its_tables_for_the_compiler():
    schema = json.loads((SCHEMAS / "invoice.json").read_text(encoding="utf-8"))["schema"]
    text = json_schema_to_lark(schema)
    remembered, _ = lr._TABLES.get(text)
    assert lr.build_lr_tables(text) is remembered


@pytest.mark.parametrize("text, strict_only", [
    ("start: a\n    | b\na: X\nb: X\nX: /x/\n", False),  # reduce/reduce
    ("start: e\ne: e P e\n    | N\nP: /\\+/\nN: /[0-9]/\n", True),  # shift/reduce (ambiguous sum)
])
def test_conflicts_are_larks(text, strict_only):
    with pytest.raises(GrammarConflictError):
        lr.subset_tables(text, strict=True)
    with pytest.raises(lark.exceptions.GrammarError):
        _lark(text, strict=True)
    if strict_only:  # resolved as shift, as lark does
        _assert_isomorphic(lr.subset_tables(text, strict=False)[0], _lark(text, strict=False))
    else:
        with pytest.raises(GrammarConflictError):
            lr.subset_tables(text, strict=False)


@pytest.mark.parametrize("text", ['start: "a"\n', "start: a\n%ignore WS\na: A\nA: /x/\nWS: / /\n",
                                  "start: A?\nA: /x/\n", "start: A\nA: /x/i\n", "start: B\nA: /x/\n",
                                  "start: A\n    | A\nA: /x/\n"])
def test_text_outside_the_subset_goes_to_lark(text):
    assert read_lark_subset(text) is None


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


def test_state_and_rule_limits():
    text = HANDWRITTEN[2]
    with pytest.raises(GrammarTooComplex):
        lr.subset_tables(text, strict=True, max_states=3)
    with pytest.raises(GrammarTooComplex):
        lr.subset_tables(text, strict=True, max_rules=2)


def test_a_lark_grammar_over_the_rule_limit_is_refused_before_larks_analysis(monkeypatch):
    # issue 11: the limits were checked only after lark's full LALR analysis (minutes for a large grammar)
    text = "start: " + " | ".join(f"r{i}" for i in range(40)) + "\n" + \
        "\n".join(f'r{i}: "a{i}" ("x")* "b"' for i in range(40)) + '\n%ignore " "\n'
    assert read_lark_subset(text) is None  # EBNF and %ignore: the lark path

    def no_analysis(*_args, **_kwargs):
        raise AssertionError("lark's analysis ran")

    monkeypatch.setattr(lr.lark, "Lark", no_analysis)
    with pytest.raises(GrammarTooComplex) as err:
        lr.build_lr_tables(text, max_rules=50)
    assert "rules (limit 50)" in err.value.message
    monkeypatch.undo()
    tables = lr.build_lr_tables(text, max_rules=10_000)  # under the limit: the same text analyses
    assert len(lark.Lark(text, parser="lalr").parser.parser.parser.parse_table.states) == len(tables.actions)
