"""GrammarCompiler: choices, regex edge cases, typed errors, limits and deadlines."""
from __future__ import annotations

import random

import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher
from lightllm_struct.grammar.errors import (CompileTimeout, GrammarConflictError, GrammarSyntaxError,
                                            GrammarTooComplex, RegexError)
from tests.grammar.grammar_helpers import JSON_GRAMMAR, brute_force_allowed, random_walk
from tests.grammar.small_vocab import EOS_ID, small_tokenizer


@pytest.fixture(scope="module")
def compiler():
    return GrammarCompiler(small_tokenizer())


def test_choice_outputs_exactly_one_choice(compiler):
    choices = ["red", "redgreen", "green", "中文", "blue"]
    grammar = compiler.compile_choice(choices)
    rng = random.Random(0)
    seen = set()
    for _ in range(60):
        text, ended, _ = random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=20, eos_bias=0.5)
        assert ended and text.decode("utf-8") in choices
        seen.add(text.decode("utf-8"))
    assert {"red", "redgreen"} <= seen
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(b"red")
    assert EOS_ID in brute_force_allowed(matcher, small_tokenizer().vocab_size)


def test_regex_matching_empty_string_allows_eos_at_once(compiler):
    matcher = Matcher(compiler.compile_regex(r"(ab)*"))
    assert matcher.is_complete()
    assert matcher.accept_bytes(b"a") and not matcher.is_complete()
    assert matcher.accept_bytes(b"b") and matcher.accept_token(EOS_ID) and matcher.is_terminated()


@pytest.mark.parametrize("bad", [[], "abc", [1, 2]])
def test_choice_needs_strings(compiler, bad):
    with pytest.raises(GrammarSyntaxError):
        compiler.compile_choice(bad)


def test_syntax_error_names_line_and_column(compiler):
    with pytest.raises(GrammarSyntaxError) as info:
        compiler.compile_lark('start: "a"\nfoo: "x" (\n')
    assert "line" in str(info.value)
    with pytest.raises(GrammarSyntaxError, match="undefined|not defined"):
        compiler.compile_lark("start: missing_rule")


def test_conflict_is_typed(compiler):
    with pytest.raises(GrammarConflictError):
        compiler.compile_lark('start: a | b\na: "x"\nb: "x"')


def test_bad_terminal_regex_names_the_terminal(compiler):
    with pytest.raises(RegexError, match="WORD"):
        compiler.compile_lark("start: WORD\nWORD: /(?<=a)b/")


def test_invalid_regex(compiler):
    with pytest.raises(RegexError):
        compiler.compile_regex(r"(unclosed")


def test_deadline_and_limits():
    tok = small_tokenizer()
    with pytest.raises(CompileTimeout):
        GrammarCompiler(tok, compile_timeout_s=0.0).compile_lark(JSON_GRAMMAR)
    with pytest.raises(CompileTimeout):
        GrammarCompiler(tok, compile_timeout_s=0.0).compile_regex(r"[a-z]{1,40}")
    with pytest.raises(GrammarTooComplex):
        GrammarCompiler(tok, max_dfa_states=50).compile_regex(r"[ab]*a[ab]{10}")
    with pytest.raises(GrammarTooComplex):
        GrammarCompiler(tok, max_lr_states=5).compile_lark(JSON_GRAMMAR)
    with pytest.raises(GrammarTooComplex):
        GrammarCompiler(tok, max_rules=3).compile_lark(JSON_GRAMMAR)


def test_blow_up_regex_fails_fast_not_hangs():
    import time

    start = time.monotonic()
    with pytest.raises((GrammarTooComplex, CompileTimeout)):
        GrammarCompiler(small_tokenizer(), compile_timeout_s=2.0).compile_regex(r"(a|b)*a(a|b){20}")
    assert time.monotonic() - start < 5.0


def test_keyword_priority_and_contextual_lexing(compiler):
    grammar = compiler.compile_lark('start: "if" NAME\nNAME: /[a-z]+/\n%ignore " "')
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(b"if ifx") and matcher.is_complete()
    matcher.reset()
    assert matcher.accept_bytes(b"ifx") and matcher.is_complete()  # only "if" is live at the start
    matcher = Matcher(compiler.compile_lark('start: NAME "if"\nNAME: /[a-z]+/\n%ignore " "'))
    assert matcher.accept_bytes(b"abif") and not matcher.is_complete()  # longest match: one NAME
    matcher.reset()
    assert matcher.accept_bytes(b"ab if") and matcher.is_complete()
