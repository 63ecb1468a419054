"""Shortest finishes against a brute-force breadth-first search over the real byte-level automaton."""
from __future__ import annotations

import json
import random

import pytest

from lightllm_struct.grammar import GrammarCompiler
from tests.grammar.small_vocab import small_tokenizer

# (kind, spec, the bytes a shortest finish can need: the brute force searches over these only)
GRAMMARS = [
    ("json", {"type": "object", "required": ["a", "b"], "additionalProperties": False,
              "properties": {"a": {"type": "string"}, "b": {"type": "array", "items": {"type": "integer"}}}},
     b'{}[]",:0ab'),
    ("json", {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 2}, b'[]",x'),
    ("json", {"$defs": {"n": {"type": "object", "required": ["v"], "additionalProperties": False,
                              "properties": {"k": {"$ref": "#/$defs/n"}, "v": {"type": "number"}}}},
              "$ref": "#/$defs/n"}, b'{}",:0.kv'),
    ("json", {"anyOf": [{"type": "boolean"}, {"type": "object", "required": ["x"], "additionalProperties": False,
                                              "properties": {"x": {"enum": ["long-value", 7]}}}]},
     b'{}",:7xtruefalsongv-'),
    ("lark", 'start: expr\nexpr: term ("+" term)*\nterm: NUMBER | "(" expr ")" | "-" term\n'
             'NUMBER: /[0-9]+(\\.[0-9]+)?/\n%ignore " "', b"0.+()- "),
    ("lark", 'start: item+\nitem: "k" WORD ";" | "[" start "]"\nWORD: /[a-z]{2,}/\n%ignore /[ \\n]+/',
     b"k;[]ab "),
    ("regex", r"(ab|cde)+x{2,4}", b"abcdex"),
    ("regex", r"[0-9]{3}-(yes|no)?z", b"0-yesnoz"),
    ("choice", ["red", "green", "blue", "a much longer choice"], b"redgnblu"),
]
_SEARCH_STATES = 20_000


def _compile(kind, spec):
    comp = GrammarCompiler(small_tokenizer())
    return {"json": comp.compile_json_schema, "lark": comp.compile_lark, "regex": comp.compile_regex,
            "choice": comp.compile_choice}[kind](spec)


def _brute(grammar, config, alphabet, limit: int = 40) -> int | None:
    """Fewest bytes (over ``alphabet``) after which ``config`` is complete, by breadth-first search."""
    if grammar.is_complete(config):
        return 0
    seen, frontier = {config}, [config]
    for depth in range(1, limit + 1):
        nxt = []
        for c in frontier:
            for b in alphabet:
                after = grammar.feed_bytes(c, bytes([b]))
                if after is None or after in seen:
                    continue
                if grammar.is_complete(after):
                    return depth
                seen.add(after)
                nxt.append(after)
        frontier = nxt
        if len(seen) > _SEARCH_STATES:
            return None
    return None


def _random_configs(grammar, alphabet, rng: random.Random, n: int):
    for _ in range(n):
        config = grammar.initial_config()
        for _ in range(rng.randrange(0, 25)):
            options = sorted(b for b in grammar.next_bytes(config) if b in alphabet)
            if not options:
                break
            config = grammar.feed_bytes(config, bytes([rng.choice(options)]))
        yield config


@pytest.mark.parametrize("kind,spec,alphabet", GRAMMARS, ids=[f"{g[0]}-{i}" for i, g in enumerate(GRAMMARS)])
def test_distance_equals_brute_force(kind, spec, alphabet):
    grammar = _compile(kind, spec)
    rng = random.Random(json.dumps(spec, sort_keys=True))
    alphabet = sorted(set(alphabet))
    checked = 0
    for config in _random_configs(grammar, alphabet, rng, 14):
        expected = _brute(grammar, config, alphabet)
        if expected is None:
            continue
        assert grammar.distances.of(config) == expected
        checked += 1
    assert checked >= 10


def test_start_distance_is_the_shortest_sentence():
    assert _compile("choice", ["red", "green", "blue"]).distances.start == 3
    assert _compile("regex", r"a{5}b*").distances.start == 5
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string", "minLength": 4}}}
    assert _compile("json", schema).distances.start == len('{"a":"xxxx"}')


def test_distance_is_zero_exactly_when_complete():
    grammar = _compile("lark", GRAMMARS[4][1])
    for text in [b"1", b"(1)", b"1+", b"(", b"1.5 + 2"]:
        config = grammar.feed_bytes(grammar.initial_config(), text)
        assert (grammar.distances.of(config) == 0) == grammar.is_complete(config)
