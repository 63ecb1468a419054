"""The additional-property key's DFA built from the key list (key_dfa.py) against the regex path and an oracle.

Two independent checks: the language equals that of keys.py's regex run through the regex path (an exact
product walk over every pair of states, so every byte string is covered), and the DFA agrees with the
definition itself, ``json.loads`` of the bytes is a string with no lone surrogate that is no key, on every
short byte string over the bytes that matter and on many spellings and near misses of the keys.
"""
from __future__ import annotations

import itertools
import json
import random

import pytest

from lightllm_struct.grammar.compiler import GrammarCompiler
from lightllm_struct.grammar.errors import GrammarTooComplex
from lightllm_struct.grammar.json_schema.key_dfa import key_dfa_excluding
from lightllm_struct.grammar.json_schema.keys import key_regex_excluding
from lightllm_struct.grammar.lexing import dfa_cache
from lightllm_struct.grammar.lexing.byte_dfa import ByteDFA
from lightllm_struct.grammar.lexing.regex_dfa import regex_dfa
from lightllm_struct.grammar.parsing.cfg import lark_regex
from tests.grammar.json_schema.spellings import string_spelling
from tests.grammar.lexing.automata import same_language
from tests.grammar.small_vocab import small_tokenizer
from tests.grammar.json_schema.test_strings import KEYS, OTHERS

SMALL = [[], [""], ["a"], ["", "a"], ["a", "ab", "abc"], ["ab", "b"], ["a", "a"], ['"', "\\", "/", "\n", "\x00"],
         ["é", "è", "e"], ["😀", "😁"], ["\ud7ff", "\ue000", "\uffff", "\U00010000"], ["日本", "日"], KEYS,
]


def oracle(data: bytes, keys: set[str]) -> bool:
    """Whether ``data`` is a JSON string (no lone surrogate) that decodes to no key: the definition."""
    try:
        text = data.decode("utf-8")  # strict: no encoded surrogates, no overlong forms
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return False
    if not isinstance(value, str) or not (text.startswith('"') and text.endswith('"')):
        return False  # json.loads also takes surrounding whitespace
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in value) and value not in keys


def regex_path(keys: list[str]) -> ByteDFA:
    return regex_dfa(lark_regex(key_regex_excluding(keys)), max_states=20_000)


@pytest.mark.parametrize("keys", SMALL, ids=range(len(SMALL)))
def test_small_key_sets_give_the_regex_paths_minimal_dfa(keys):
    new, old = key_dfa_excluding(keys), regex_path(keys)
    assert same_language(new, old)
    assert new.num_states == old.num_states  # both minimal


# Bytes where the key language changes its mind: quotes, backslash, escape letters, hex digits of the keys'
# code points in both cases, UTF-8 lead and continuation bytes, a control byte, a plain letter.
ALPHABET = b'"\\u/bnx0Aa16eE9\xc3\xa9\n'


@pytest.mark.parametrize("keys", [["a"], ["", "a", "ab"], ["é", "\n", "a"]], ids=range(3))
def test_every_short_byte_string_against_the_oracle(keys):
    dfa, wanted = key_dfa_excluding(keys), set(keys)
    for n in range(1, 6):
        for body in itertools.product(ALPHABET, repeat=n - 2 if n >= 2 else 0):
            for data in ([b'"' + bytes(body) + b'"'] if n >= 2 else [bytes([c]) for c in ALPHABET]):
                assert dfa.fullmatch(data) == oracle(data, wanted), (keys, data)


def _near_misses(text: str, rng: random.Random) -> list[bytes]:
    """Spellings of ``text``, and byte-level mutations of them (cut, doubled, changed, moved bytes)."""
    out = []
    for _ in range(6):
        data = string_spelling(text, rng).encode("utf-8")
        out.append(data)
        i = rng.randrange(len(data))
        out += [data[:i] + data[i + 1:], data[:i] + data[i:i + 1] + data[i:],
                data[:i] + bytes([rng.choice(b'"\\uD8dcfF0a\xc3\xa9\xf0\x9f')]) + data[i + 1:], data[:i]]
    return out


def _random_key(rng: random.Random) -> str:
    pool = "abcdefghij_" + "éè日本\n\"\\/\x7f" + "😀😁" + "\ud7ff\ue000"
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 8)))


@pytest.mark.parametrize("seed", range(8))
def test_random_key_sets_against_the_regex_path_and_the_oracle(seed):
    rng = random.Random(seed)
    keys = list({_random_key(rng) for _ in range(rng.randint(10, 60))})
    new = key_dfa_excluding(keys)
    assert same_language(new, regex_path(keys))
    wanted = set(keys)
    texts = keys + [k + rng.choice("a😀é") for k in keys] + [k[:-1] for k in keys if k] + OTHERS
    for text in texts:
        for data in _near_misses(text, rng):
            assert new.fullmatch(data) == oracle(data, wanted), (text, data)


@pytest.mark.parametrize("key", ["\ud800", "x\udc00", "\ud83d"])
def test_a_key_with_a_lone_surrogate_is_left_to_the_regex_path(key):
    with pytest.raises(ValueError):
        key_dfa_excluding(["a", key])
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in ["a", key]}}
    GrammarCompiler(small_tokenizer()).compile_json_schema(schema)
    assert dfa_cache._MAKERS.get(lark_regex(key_regex_excluding(["a", key]))) is None


def test_state_limit_is_a_typed_refusal():
    with pytest.raises(GrammarTooComplex):
        key_dfa_excluding([f"key{i}_{i * i}" for i in range(50)], max_states=100)


def test_a_compiled_schema_takes_the_key_dfa_and_not_the_regex(monkeypatch):
    """The object's "any other key" terminal reaches the compiler as the DFA built from its keys."""
    keys = [f"only_here_{random.Random(1).random()}", "b"]  # a key set no other test compiled (cold caches)
    pattern = lark_regex(key_regex_excluding(keys))
    through_regex: list[str] = []
    real = dfa_cache.regex_dfa
    monkeypatch.setattr(dfa_cache, "regex_dfa", lambda p, **kw: (through_regex.append(p), real(p, **kw))[1])
    compiler = GrammarCompiler(small_tokenizer())
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in keys}}
    compiled = compiler.compile_json_schema(schema)
    assert pattern not in through_regex
    got = [d for t, d in zip(compiled.lr.terminals, compiled.dfas) if t.pattern == pattern]
    assert len(got) == 1 and same_language(got[0], regex_path(keys))


def test_literal_and_enum_terminals_take_their_finite_dfa(monkeypatch):
    """Declared keys, a const and an enum of strings reach the compiler as DFAs of their spellings."""
    tag = random.Random(2).randrange(10**9)  # digits only: the same in the regex text
    schema = {"type": "object", "properties": {f"k_{tag}": {"const": f"c_{tag}"},
                                               "e": {"enum": [f"x_{tag}", f"yé_{tag}", "z"]}},
              "additionalProperties": False}
    through_regex: list[str] = []
    real = dfa_cache.regex_dfa
    monkeypatch.setattr(dfa_cache, "regex_dfa", lambda p, **kw: (through_regex.append(p), real(p, **kw))[1])
    compiled = GrammarCompiler(small_tokenizer()).compile_json_schema(schema)
    strings = [t for t in compiled.lr.terminals if str(tag) in t.pattern or t.pattern == '(?:"e")']
    assert len(strings) == 4 and not [p for p in through_regex if str(tag) in p or p == '(?:"e")']
    for term, dfa in zip(compiled.lr.terminals, compiled.dfas):
        if term in strings:
            assert same_language(dfa, real(term.pattern, max_states=20_000)), term.pattern


def test_bounded_classes_of_the_key_dfa_are_its_states_without_refining():
    """Built minimal: its states are its mask-sharing classes (exact at a token-length horizon, as the
    refinement the regex path's DFA went through shows)."""
    from lightllm_struct.grammar.lexing.byte_dfa import _bounded_moore

    dfa = key_dfa_excluding(["length", "width", "height", "shape", "radius", "base", "units", "é"])
    assert dfa.minimal and dfa.bounded_classes(64) == list(range(dfa.num_states))
    assert len(set(_bounded_moore(dfa.table, dfa.accepting, 64))) == dfa.num_states
