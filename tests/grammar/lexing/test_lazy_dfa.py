"""Lazily built DFAs: the same language as the eager DFA, sound state sharing, explosive regexes refused."""
from __future__ import annotations

import random
import re
import time

import numpy as np
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher
from lightllm_struct.grammar.lexing.regex_dfa import lazy_regex_dfa, regex_dfa, wants_lazy
from lightllm_struct.grammar.errors import GrammarTooComplex
from tests.grammar.grammar_helpers import brute_force_allowed, random_walk
from tests.grammar.small_vocab import EOS_ID, small_tokenizer

PATTERNS = [
    r"a{0,40}",
    r"(?:ab|a){3,30}c",
    r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,50}"',
    r"(?:[a-c]{1,3}x){0,20}y?",
    r"(?:a?){0,20}b",  # a nullable unit: its copies all sit in one closure
    r"(?:é|中|😀|[0-9]){2,25}",
    r"[^\x00-\U0010ffff]|z{0,30}",  # an empty set: dead NFA nodes are pruned
    r"(?:(?:ab){0,20}c){0,20}",
    r"(?:x|y)*x(?:x|y){5}",
    r"[a-z]{5,70}@[a-z]{1,20}\.(?:com|org)",
    # 64+ optional copies: lazy DFAs reserve them in the NFA (virtual copies), also nested
    r'"(?:[^"\\]|\\u[0-9a-f]{4}){0,300}"',
    r"(?:(?:ab){0,70}c){0,3}",
    r"(?:x(?:ab){0,64}){0,64}y",
    r"(?:ab|c){10,100}",
    # dead parts: an empty class inside a repeated unit, and a unit that matches nothing at all
    r"(?:[^\x00-\U0010ffff]|b){0,100}c",
    r"(?:[^\x00-\U0010ffff]){0,70}d|e{0,80}",
]


def _random_inputs(pattern: str, rng: random.Random, count: int) -> list[bytes]:
    alphabet = sorted(set(re.sub(r"\\[a-z]|[{}()?*+|\[\]^$,\d-]", "", pattern)) | set('abcxyz"\\u0Aé中😀@.'))
    out = []
    for _ in range(count):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        data = text.encode("utf-8")
        if data and rng.random() < 0.2:  # cut inside a multibyte character now and then
            data = data[:rng.randint(0, len(data))]
        out.append(data)
    return out


def _matching_inputs(pattern: str, dfa, rng: random.Random, count: int) -> list[bytes]:
    """Strings the eager DFA accepts, by random walks that stop at accepting states."""
    out = []
    for _ in range(count):
        state, data = 0, b""
        for _ in range(200):
            if dfa.accepting[state] and rng.random() < 0.15:
                break
            nxt = np.flatnonzero(dfa.table[state] >= 0)
            if not len(nxt):
                break
            b = int(rng.choice(nxt.tolist()))
            data += bytes([b])
            state = int(dfa.table[state, b])
        out.append(data)
    return out


@pytest.mark.parametrize("pattern", PATTERNS)
def test_lazy_dfa_agrees_with_eager(pattern):
    rng = random.Random(pattern)
    eager = regex_dfa(pattern, max_states=20_000)
    lazy = lazy_regex_dfa(pattern, max_states=200_000)
    inputs = _random_inputs(pattern, rng, 300) + _matching_inputs(pattern, eager, rng, 150)
    accepted = 0
    for data in inputs:
        got = lazy.fullmatch(data)
        assert got == eager.fullmatch(data), data
        accepted += got
        try:
            assert got == (re.fullmatch(pattern, data.decode("utf-8")) is not None), data
        except UnicodeDecodeError:
            assert not got
        # prefixes: a lazy state exists exactly while the input can still be completed
        e, z = 0, 0
        for b in data:
            e, z = int(eager.table[e, b]), int(lazy.row(z)[b])
            assert (e < 0) == (z < 0), data
            if e < 0:
                break
    assert accepted > 20


@pytest.mark.parametrize("pattern", [PATTERNS[2], r"(?:[a-c]{1,3}x){0,60}y", r"(?:ab|\u00e9){0,80}!"])
def test_equal_shapes_behave_alike_within_the_horizon(pattern):
    """States that share a shape (and so share token masks) accept the same strings up to the horizon."""
    horizon = 6
    lazy = lazy_regex_dfa(pattern, max_states=200_000)
    lazy.explore(40, limit=100_000)
    by_shape: dict = {}
    for s in range(lazy.num_states):
        by_shape.setdefault(lazy.shape(s, horizon), []).append(s)
    shared = [states for states in by_shape.values() if len(states) > 1]
    assert shared, "expected states far from the repeat's end to share their shape"
    for states in shared[:20]:
        for other in states[1:3]:
            _assert_same_within(lazy, states[0], other, horizon)


def _assert_same_within(dfa, a: int, b: int, depth: int) -> None:
    todo = [(a, b, 0)]
    seen = set()
    while todo:
        x, y, d = todo.pop()
        assert dfa.is_accepting(x) == dfa.is_accepting(y)
        if d == depth or (x, y) in seen:
            continue
        seen.add((x, y))
        rx, ry = dfa.row(x), dfa.row(y)
        assert np.array_equal(rx < 0, ry < 0)
        for byte in np.flatnonzero(rx >= 0).tolist():
            todo.append((int(rx[byte]), int(ry[byte]), d + 1))


def test_wants_lazy_only_for_long_counted_repeats():
    assert wants_lazy(r'"(?:[^"\\]|\\.){0,2000}"')
    assert wants_lazy(r"(?:a|(?:b{3,300}))c")
    assert not wants_lazy(r"[a-z]{1,200}") and not wants_lazy(r"(a|b)*a(a|b){40}")


@pytest.mark.parametrize("pattern", [r"(a|b)*a(a|b){40}", r"(a|b)*a(a|b){300}", r"(?:[ab]*a[ab]{30}){1,300}"])
def test_explosive_regex_refused_fast(pattern):
    compiler = GrammarCompiler(small_tokenizer())
    start = time.monotonic()
    with pytest.raises(GrammarTooComplex):
        compiler.compile_regex(pattern)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("pattern", [r"(?:ab|c|é){0,300}d", r'"(?:[^"\\]|\\n){0,400}"'])
def test_lazy_regex_grammar_masks_are_exact(pattern):
    """Folded scan rows (far from the end) and exact ones (near it) give the brute-force masks."""
    assert wants_lazy(pattern)
    compiler = GrammarCompiler(small_tokenizer())
    grammar = compiler.compile_regex(pattern)
    rng = random.Random(1)
    for _ in range(3):
        text, ended, _ = random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=30, check_masks=True, eos_bias=0.1)
        if ended:
            assert re.fullmatch(pattern, text.decode("utf-8"))
    vocab_size = small_tokenizer().vocab_size
    unit = b"ab" if pattern.startswith("(?:ab") else b"x"
    prefix = b"" if unit == b"ab" else b'"'
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(prefix)
    for count in range(300 if unit == b"ab" else 400):
        if count % 37 == 0 or count > 290:
            assert matcher.allowed_token_ids() == brute_force_allowed(matcher, vocab_size), count
        assert matcher.accept_bytes(unit)
    assert matcher.allowed_token_ids() == brute_force_allowed(matcher, vocab_size)
    assert not matcher.accept_bytes(unit)
    assert EOS_ID not in brute_force_allowed(matcher, vocab_size)
    assert matcher.accept_bytes(b"d" if unit == b"ab" else b'"') and matcher.is_complete()


@pytest.mark.parametrize("pattern", PATTERNS[:6] + PATTERNS[10:12])
def test_single_steps_equal_whole_rows(pattern):
    """The matcher's one-byte steps reach exactly the node sets whole rows reach; has_out agrees."""
    rng = random.Random(pattern)
    stepped, rowed = lazy_regex_dfa(pattern, max_states=200_000), lazy_regex_dfa(pattern, max_states=200_000)
    for data in _random_inputs(pattern, rng, 100):
        a = b = 0
        for byte in data:
            assert stepped.has_out(a) == bool((rowed.row(b) >= 0).any())
            a, b = stepped.step(a, byte), int(rowed.row(b)[byte])
            assert (a < 0) == (b < 0)
            if a < 0:
                break
            assert stepped.subset(a) == rowed.subset(b)
