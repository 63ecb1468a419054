"""String regexes: escapes, unicode, lengths in code points, keys, patterns and formats."""
from __future__ import annotations

import json
import random
import re

import interegular
import pytest
from lark.load_grammar import load_grammar

from lightllm_struct.grammar.json_schema.patterns import (FORMATS, PatternUnsupported, length_limited_content,
                                                        pattern_content_regex)
from lightllm_struct.grammar.json_schema.keys import key_regex_excluding
from lightllm_struct.grammar.json_schema.strings import ANY_STRING, literal_spelling, literal_string, string_regex
from tests.grammar.json_schema.helpers import SchemaGrammar
from tests.grammar.json_schema.spellings import string_spelling

SAMPLES = ["", "a", "ab", "abc", "é", "😀", "a😀b", 'q"q', "back\\slash", "tab\tnl\n", "\x00\x1f", "ÿ€", "日本語"]


def _spellings(text: str) -> list[str]:
    """Several JSON spellings of one string: canonical, ASCII-escaped, and with \\/ and \\u escapes."""
    out = [json.dumps(text, ensure_ascii=False), json.dumps(text)]
    out.append('"' + "".join(f"\\u{ord(c):04X}" if ord(c) < 0x10000 else c for c in text) + '"')
    if "/" not in text:
        out.append(json.dumps(text + "/", ensure_ascii=False).replace("/", "\\/"))
    return out


@pytest.mark.parametrize("lo,hi", [(0, None), (0, 0), (1, 1), (2, 3), (0, 2), (3, None)])
def test_lengths_count_code_points_over_every_spelling(lo, hi):
    rx = re.compile(string_regex(lo, hi))
    interegular.parse_pattern(string_regex(lo, hi))
    for text in SAMPLES:
        for spelled in _spellings(text):
            n = len(json.loads(spelled))
            assert bool(rx.fullmatch(spelled)) == (lo <= n and (hi is None or n <= hi)), (spelled, lo, hi)


def test_any_string_rejects_malformed():
    rx = re.compile(ANY_STRING)
    for bad in ['"a', '"\\x"', '"\\u12"', '"\n"', '"a"b"', "'a'"]:
        assert not rx.fullmatch(bad), bad


def test_lone_surrogates_not_in_length_limited_strings():
    assert re.fullmatch(ANY_STRING, '"\\ud800"')
    assert not re.fullmatch(string_regex(1, 1), '"\\ud800"')
    assert re.fullmatch(string_regex(1, 1), '"\\ud83d\\ude00"')
    assert not re.fullmatch(string_regex(2, 2), '"\\ud83d\\ude00"')


# Near misses on purpose: 😁 shares 😀's high surrogate, U+D7FF / U+E000 sit beside the surrogate block.
KEYS = ["a", "ab", "b\"c", "日", "x\ny", "", "é", "😀", "a/b", "\\", "\ud7ff\U0010ffff"]
OTHERS = ["abc", "b", "A", "aa", "bc", "b\"", "日本", "x\nyz", "x", " ", "\\\\", "e", "😁", "é😀", "a/", "\t",
          "\ue000", "\ud7ff", "\ud7ff\U0010fffe", "\U00010000", "\x7f"]


def _every_spelling(text: str, rng: random.Random, n: int = 12) -> set[str]:
    return set(_spellings(text)[:3]) | {string_spelling(text, rng) for _ in range(n)}  # [3] spells text + "/"


def test_key_regex_excludes_every_spelling_of_the_known_keys():
    """Declared keys in any spelling (\\u00e9, \\u00E9, \\/, surrogate pairs) never match the extra-key regex;
    every spelling of every other string does."""
    regex = key_regex_excluding(KEYS)
    interegular.parse_pattern(regex)
    rx, rng = re.compile(regex), random.Random(3)
    for key in KEYS:
        assert not any(rx.fullmatch(s) for s in _every_spelling(key, rng)), key
    for other in OTHERS:
        assert all(rx.fullmatch(s) for s in _every_spelling(other, rng)), other


@pytest.mark.parametrize("text", KEYS + OTHERS)
def test_literal_string_any_spelling_accepts_exactly_the_spellings_of_its_value(text):
    rx, rng = re.compile(literal_string(text, any_spelling=True)), random.Random(5)
    assert all(rx.fullmatch(s) for s in _every_spelling(text, rng))
    for other in KEYS + OTHERS:
        if other != text:
            assert not any(rx.fullmatch(s) for s in _every_spelling(other, rng, 3)), (text, other)


def _dumps(text: str) -> set[str]:
    """json.dumps's two spellings (a lone surrogate, which ensure_ascii=False would leave raw, as an escape)."""
    raw = "".join(f"\\u{ord(ch):04x}" if 0xD800 <= ord(ch) <= 0xDFFF else json.dumps(ch, ensure_ascii=False)[1:-1]
                  for ch in text)
    return {f'"{raw}"', json.dumps(text, ensure_ascii=True)}


@pytest.mark.parametrize("text", KEYS + OTHERS)
def test_literal_string_by_default_accepts_exactly_the_json_dumps_spellings(text):
    """Default: the ensure_ascii=False and =True spellings of the value and nothing else (one spelling for ASCII
    text, so a declared key is forced), never a spelling of another value."""
    rx, rng = re.compile(literal_string(text)), random.Random(5)
    canonical = _dumps(text)
    assert all(rx.fullmatch(s) for s in canonical)
    assert not any(rx.fullmatch(s) for s in _every_spelling(text, rng) - canonical)
    for other in KEYS + OTHERS:
        if other != text:
            assert not any(rx.fullmatch(s) for s in _every_spelling(other, rng, 3)), (text, other)


@pytest.mark.parametrize("other", [string_regex(0, 2), string_regex(3, None), key_regex_excluding(KEYS[:5]),
                                   '"' + pattern_content_regex("^[a-z\"/]+$") + '"', literal_string("a/b")])
def test_literal_spelling_decides_overlap_with_any_string_terminal(other):
    """lalr_check tests one spelling of a literal instead of intersecting automata: that spelling must match
    a terminal whenever any spelling of the value does."""
    rx, rng = re.compile(other), random.Random(9)
    for text in KEYS + OTHERS:
        one = literal_spelling(literal_string(text))
        assert one is not None and json.loads(one) == text
        assert bool(rx.fullmatch(one)) == any(rx.fullmatch(s) for s in _every_spelling(text, rng)), (other, text)


def test_literal_spelling_survives_lark_and_knows_only_literals():
    regex = literal_string('q"/')
    grammar, _ = load_grammar(f"start: T\nT: /{regex}/", "<test>", (), False)
    terminals, _rules, _ignore = grammar.compile(["start"], set())
    assert literal_spelling(terminals[0].pattern.to_regexp()) == '"q\\"/"'
    assert literal_spelling(string_regex(0, 3)) is None


def test_literal_string_of_a_lone_surrogate_is_its_escape():
    rx = re.compile(literal_string("a\ud800"))
    assert rx.fullmatch('"a\\ud800"') and not rx.fullmatch('"\\u0061\\uD800"') and not rx.fullmatch('"a"')
    rx = re.compile(literal_string("a\ud800", any_spelling=True))
    assert rx.fullmatch('"a\\ud800"') and rx.fullmatch('"\\u0061\\uD800"') and not rx.fullmatch('"a"')


@pytest.mark.parametrize("pattern", ["^a+$", "ab", "^[a-c]{2,3}", "x|y$", r"^\d{3}-\d{2}$", "^[^a]*$", r"\W",
                                     "^.$", r"^\S+$", "^(ab|cd)*$", "é", r"^[\"\\]$", "^/$"])
def test_pattern_matches_decoded_content(pattern):
    content = pattern_content_regex(pattern)
    interegular.parse_pattern(content)
    rx = re.compile('"' + content + '"')
    rng = random.Random(1)
    alphabet = "abcdxy0123-/é\"\\ \n😀"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(400)]
    for text in texts + ["ab", "aaa", "123-45", "x", "y", "abcd", "é", '"', "\\", "/"]:
        for spelled in _spellings(text)[:2]:
            got = bool(rx.fullmatch(spelled))
            want = re.search(pattern, text) is not None
            assert not got or want, (pattern, spelled)  # sound always
            # Completeness where the spelling is raw or ASCII, and "$" is read as ECMA does (Python's "$" also
            # matches before a final newline: refused here, which is sound).
            ecma_end = pattern.endswith("$") and text.endswith("\n")
            if not ecma_end and all(ord(c) < 0x80 or json.dumps(text, ensure_ascii=False) == spelled for c in text):
                assert got == want, (pattern, spelled)


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=a)", r"\bx", "(?i)a", "a^b"])
def test_untranslatable_patterns_raise(pattern):
    with pytest.raises(PatternUnsupported):
        pattern_content_regex(pattern)


FORMAT_CASES = {
    "date": (["2024-02-29", "1999-12-31", "2000-02-29"], ["2023-02-29", "1900-02-29", "2024-13-01", "24-01-01"]),
    "time": (["23:59:59Z", "08:30:06.283185+01:00"], ["24:00:00Z", "08:30:06", "8:30:06Z"]),
    "date-time": (["1963-06-19T08:30:06.283185Z", "1963-06-19t08:30:06z"], ["1963-06-19 08:30:06Z"]),
    "email": (["joe.bloggs@example.com", "a+b@x.io"], [".a@x.com", "a..b@x.com", "ab", "a@-x.com"]),
    "uuid": (["2EB8AA08-AA98-11EA-B4AA-73B441D16380"], ["2eb8aa08-aa98-11ea-b4aa-73b441d1638"]),
    "uri": (["http://foo.bar/?baz=qux#quux", "urn:isbn:0451450523", "mailto:a@b.c"], ["//foo.bar", "1http://x"]),
    "ipv4": (["192.168.0.1", "0.0.0.0"], ["256.1.1.1", "1.2.3", "01.2.3.4x"]),
    "ipv6": (["::1", "::", "1:2:3:4:5:6:7:8", "fe80::1:2", "::ffff:192.168.0.1", "1::"],
             ["12345::", "1:2:3:4:5:6:7:8:9", ":::", "1::2::3"]),
    "hostname": (["www.example.com", "a-b.c1"], ["-a.com", "a_b.com", "a..b", "x" * 64]),
    "duration": (["P4Y", "PT1M", "P1DT12H", "P0D", "P2W", "P1Y2M3DT4H5M6S", "PT36H"],
                 ["P", "PT", "P1DT", "P1W2D", "1D", "P1.5D", "PT1H2S3M"]),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_formats(name):
    good, bad = FORMAT_CASES[name]
    interegular.parse_pattern(FORMATS[name])
    for text in good:
        assert re.fullmatch(FORMATS[name], text), (name, text)
    for text in bad:
        assert not re.fullmatch(FORMATS[name], text), (name, text)


@pytest.mark.parametrize(("pattern", "lo", "hi"), [("^[a-z0-9_]+$", 0, 5), ("^[a-z][a-z0-9_]*$", 2, 4),
                                                  (r"^x\d{2,}y$", 0, 6), ("^é.{0,3}$", 3, None), ("^-[ab]*$", 1, 1)])
def test_length_limits_narrow_the_one_repeat_of_an_anchored_pattern(pattern, lo, hi):
    content = length_limited_content(pattern, lo, hi)
    assert content is not None
    interegular.parse_pattern(content)
    rx, rng = re.compile('"' + content + '"'), random.Random(11)
    alphabet = "abxy_z09-é\\\"\n😀"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8))) for _ in range(600)]
    for text in texts + ["x12y", "x1234y", "ab", "a", "é", "éab", "-", "-a"]:
        want = re.search(pattern, text) is not None and lo <= len(text) and (hi is None or len(text) <= hi)
        if pattern.endswith("$") and text.endswith("\n"):
            want = False  # ECMA's "$" (Python's also matches before a final newline)
        for spelled_text in _every_spelling(text, rng, 2):
            got = bool(rx.fullmatch(spelled_text))
            assert not got or want, (pattern, spelled_text)
            # patterns take \\uXXXX escapes for ASCII only (patterns.py): complete on the other spellings
            if not re.search(r"\\u(?!00[0-7])", spelled_text):
                assert got == want, (pattern, spelled_text)


@pytest.mark.parametrize("pattern", ["^a+b+$", "a+", "^(ab)+$", "^[a-z]+(-[a-z]+)*$", "^-?[ab]*$"])
def test_length_limits_with_other_patterns_are_left_to_the_caller(pattern):
    assert length_limited_content(pattern, 0, 4) is None


def test_schema_with_pattern_and_lengths_compiles_exactly():
    grammar = SchemaGrammar({"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "minLength": 2, "maxLength": 4})
    for value in ["ab", "a_1", "zz9_", "a", "abcde", "1ab", "", "ab-"]:
        grammar.check(value)


def test_distinct_literals_do_not_grow_memory_without_bound():
    """A server sees an endless stream of distinct keys and consts: the spelling table keeps a bounded number.

    Memory is traced over two runs of 50k distinct literals: the second must keep (almost) nothing more than
    the first, as the table is full after the first.
    """
    import tracemalloc

    from lightllm_struct.grammar.json_schema import strings

    tracemalloc.start()
    for i in range(50_000):
        literal_string(f"key-{i:06d}")
    first = tracemalloc.take_snapshot()
    for i in range(50_000):
        literal_string(f"other-{i:06d}")
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(first, "filename"))
    tracemalloc.stop()
    assert len(strings._SPELLED_LITERALS) == strings._SPELLED_LITERALS.maxsize
    assert grown < 2**18, f"{grown} bytes more kept by the second 50k distinct literals"
    assert literal_spelling(literal_string("kept")) == '"kept"'


@pytest.mark.parametrize("fmt, pattern", [("email", ".*[0-9]{5}.*"), ("date-time", ".*1.{10}")])
def test_a_pattern_and_format_too_large_to_intersect_are_refused_at_the_pattern(fmt, pattern):
    # No length bound took part: the refusal once raised UnboundLocalError (untyped) looking for one.
    from lightllm_struct.grammar.errors import UnsupportedSchemaFeature
    from lightllm_struct.grammar.json_schema import json_schema_to_lark
    with pytest.raises(UnsupportedSchemaFeature) as info:
        json_schema_to_lark({"type": "string", "format": fmt, "pattern": pattern})
    assert info.value.pointer == "/pattern"
