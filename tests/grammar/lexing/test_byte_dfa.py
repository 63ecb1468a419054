"""Byte DFAs from regexes agree with ``re.fullmatch``, including multibyte and split characters."""
from __future__ import annotations

import pytest

from lightllm_struct.grammar.lexing.byte_dfa import literal_dfa
from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa
from lightllm_struct.grammar.errors import CompileTimeout, GrammarTooComplex, RegexError
from lightllm_struct.grammar.deadline import Deadline
from tests.grammar.grammar_helpers import assert_dfa_agrees_with_re

PATTERNS = [
    r"[a-z]+", r'"([^"\\]|\\.)*"', r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?", r".", r"[^a]",
    r"(ab|cd)*", r"é+|ü", r"[\u4e00-\u9fff]{1,2}", r"x{2,4}y?", r"\u00e9", r"(?i:ab)c", r"[^\"é]*",
    r"\d{2}-\w", r"a|", r"[😀-😂]?z",
]
ALPHABET = ["a", "b", "c", "d", "x", "y", "z", "A", "B", '"', "\\", "é", "ü", "中", "0", "1", "-", ".",
            "e", "\n", "😀", "😃", "_"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_regex_dfa_agrees_with_re(pattern):
    assert_dfa_agrees_with_re(regex_dfa(pattern), pattern, ALPHABET, samples=1500, max_len=6)


def test_split_utf8_characters_are_prefixes_not_matches():
    dfa = regex_dfa(r"é中")
    data = "é中".encode("utf-8")
    for cut in range(1, len(data)):
        state = 0
        for b in data[:cut]:
            state = int(dfa.table[state, b])
            assert state >= 0  # every prefix, even mid-character, stays live
        assert not dfa.accepting[state]
    assert dfa.fullmatch(data)
    assert not dfa.fullmatch(b"\xc3\xa9\xe4\xb8")  # truncated


def test_dot_rejects_invalid_utf8_and_newline():
    dfa = regex_dfa(r".")
    assert dfa.fullmatch("中".encode()) and dfa.fullmatch(b"a")
    for bad in [b"\n", b"\xff", b"\xc3", b"\xed\xa0\x80", b"ab"]:
        assert not dfa.fullmatch(bad)


def test_minimal_and_dead_free():
    dfa = regex_dfa(r"(a|b)*abb")
    assert dfa.num_states == 4
    lit = literal_dfa("ké".encode())
    assert lit.fullmatch("ké".encode()) and not lit.fullmatch(b"k")


UNSUPPORTED = [r"(?=a)b", r"a(?=b)", r"(?!a)b", r"(a)\1", r"[", r"a{3,1}", r"(?<=x)y", r"\p{L}", r"^a$"]


@pytest.mark.parametrize("pattern", UNSUPPORTED)
def test_unsupported_or_invalid_regex(pattern):
    with pytest.raises(RegexError) as info:
        regex_dfa(pattern)
    assert repr(pattern) in str(info.value)


def test_limits():
    with pytest.raises(GrammarTooComplex):
        regex_dfa(r"[ab]*a[ab]{12}", max_states=500)
    deadline = Deadline(0.0)
    with pytest.raises(CompileTimeout):
        regex_dfa(r"[a-z]{30}", deadline=deadline)


def test_intervals_sweep_matches_a_per_byte_scan():
    """The determinizer's byte-range sweep gives, byte by byte, exactly the targets of the covering edges."""
    import random

    from lightllm_struct.grammar.lexing.regex_dfa import _intervals

    rng = random.Random(7)
    for _ in range(300):
        edges = []
        for _ in range(rng.randint(1, 8)):
            lo = rng.randint(0, 255)
            edges.append((lo, rng.randint(lo, min(255, lo + rng.choice([0, 3, 40, 255]))), rng.randint(0, 5)))
        got = [frozenset()] * 256
        for a, b, targets in _intervals(edges):
            assert targets and 0 <= a < b <= 256
            for byte in range(a, b):
                assert not got[byte]
                got[byte] = targets
        want = [frozenset(t for lo, hi, t in edges if lo <= byte <= hi) for byte in range(256)]
        assert got == want
