"""Free text without markers: the regex against a brute-force definition, with Python's ``re`` as the judge."""
from __future__ import annotations

import random
import re

import pytest

from lightllm_struct.grammar.errors import GrammarSyntaxError
from lightllm_struct.grammar.structural.markers import regex_literal, text_without

MARKER_SETS = [["<tool_call>"], ["</think>"], ["<tool_call>", "<think>", "<x"], ["[TOOL_CALLS]"],
               ['{"name": "'], ["ab", "ac"], ["<"], ["<|python_tag|>", "[X]"]]


def _strings(markers: list[str], rng: random.Random, count: int):
    alphabet = sorted(set("".join(markers)) | {"z", "\n", "é"})
    for _ in range(count):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.4:  # splice in a piece of a marker, often the whole
            m = rng.choice(markers)
            i = rng.randint(0, len(s))
            s = s[:i] + m[:rng.randint(1, len(m))] + s[i:]
        yield s


@pytest.mark.parametrize("markers", MARKER_SETS, ids=str)
def test_text_without_is_exactly_the_strings_holding_no_marker(markers):
    rx = re.compile(text_without(markers))
    for s in _strings(markers, random.Random(7), 4000):
        assert (rx.fullmatch(s) is not None) == (bool(s) and not any(m in s for m in markers)), s


@pytest.mark.parametrize("markers", MARKER_SETS, ids=str)
def test_bounded_text_is_a_subset_within_its_units(markers):
    rx, full = re.compile(text_without(markers, max_units=5)), re.compile(text_without(markers))
    seen = 0
    for s in _strings(markers, random.Random(3), 3000):
        if rx.fullmatch(s):
            seen += 1
            assert full.fullmatch(s), s
    assert seen > 0
    assert rx.fullmatch("z" * 5) and not rx.fullmatch("z" * 6)


@pytest.mark.parametrize("markers", [[""], ["<a<"], ["<ab", "x<"], ["<a", "<ab"], []])
def test_markers_outside_the_exact_shape_are_refused(markers):
    with pytest.raises(GrammarSyntaxError):
        text_without(markers)


def test_literal_regex_matches_itself_only():
    text = 'a/b\n[x]{"y": 1}\\ é'
    assert re.fullmatch(regex_literal(text), text) and "\n" not in regex_literal(text)
    assert not re.fullmatch(regex_literal(text), text + " ")
