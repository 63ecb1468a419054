"""The minimal DFA of a finite set of byte strings (finite_dfa.py) against the regex path and membership."""
from __future__ import annotations

import random

import pytest

from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.json_schema.regex_util import alt
from lightllm_struct.grammar.json_schema.strings import literal_spellings, literal_string
from lightllm_struct.grammar.lexing.finite_dfa import finite_dfa
from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa
from lightllm_struct.grammar.parsing.cfg import lark_regex
from tests.grammar.lexing.automata import same_language

SETS = [["calculate_discounted_cash_flow"], ["été"], ["a", "ab", ""], ["😀", "😁", "\ud800x"],
        ["calculators", "calendars", "collections-publisher", "contacts"], ['q"/\\\n', "\x00", "\x7f"]]


def _random_texts(rng: random.Random) -> list[str]:
    return list({"".join(rng.choice("abcé😀_\"\\\n") for _ in range(rng.randint(0, 6))) for _ in range(rng.randint(1, 40))})


@pytest.mark.parametrize("texts", SETS + [_random_texts(random.Random(seed)) for seed in range(6)])
def test_literal_unions_equal_the_regex_paths_minimal_dfa(texts):
    """The strings of a union of literal_string regexes, built directly: the regex path's language and size."""
    old = regex_dfa(lark_regex(alt([literal_string(t) for t in texts])), max_states=20_000)
    new = finite_dfa({sp.encode("utf-8") for t in texts for sp in literal_spellings(t)})
    assert same_language(new, old)
    assert new.num_states == old.num_states


@pytest.mark.parametrize("seed", range(4))
def test_accepts_exactly_the_set(seed):
    rng = random.Random(seed)
    strings = {bytes(rng.choice(b"ab\x00\xff") for _ in range(rng.randint(0, 7))) for _ in range(50)}
    dfa = finite_dfa(strings)
    probes = strings | {s + b"a" for s in strings} | {s[:-1] for s in strings if s} | {b"b" * 8, b"\xff\x00"}
    for data in probes:
        assert dfa.fullmatch(data) == (data in strings), data


def test_empty_set_and_empty_string():
    assert not finite_dfa([]).fullmatch(b"") and finite_dfa([]).num_states == 1
    only = finite_dfa([b""])
    assert only.fullmatch(b"") and not only.fullmatch(b"a")


def test_state_limit_is_a_typed_refusal():
    with pytest.raises(GrammarTooComplex):
        finite_dfa([f"key{i}_{i * i}".encode() for i in range(100)], max_states=50)


def test_the_table_does_not_depend_on_the_order_of_the_set():
    """Equal sets give equal tables (and digests) whatever their iteration order, e.g. across processes."""
    words = [b"calendars", b"calculators", b"contacts", b"c", b""]
    a, b = finite_dfa(words), finite_dfa(list(reversed(words)))
    assert (a.table == b.table).all() and a.digest == b.digest
