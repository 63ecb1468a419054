"""CompiledGrammar's runtime memos give exactly what the plain definitions give.

At every step of random walks over several grammars (with ignored terminals, Unicode, a recursive JSON
schema, and stacks that climb to the depth limit and back), every token of the small vocabulary is fed
through the memoised path and through the plain one (``memoize = False``), and the configurations, the
termination checks and what the checks read of the stack (``Touch``) must agree. Walks run twice, so the
second one meets warm memos computed at other stack heights.
"""
from __future__ import annotations

import random
import threading

import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher
from lightllm_struct.grammar.parsing.dpda import Touch
from tests.grammar.grammar_helpers import ARITH_GRAMMAR, JSON_GRAMMAR, SQL_GRAMMAR, UNICODE_GRAMMAR, greedy_tokenize
from tests.grammar.small_vocab import EOS_ID, SPECIAL_ID, small_tokenizer
from tests.grammar.vocab_fixtures import bench_schema

OPENERS = (b"[", b"{", b"[{", b'{"', b'["', b'[{"', b'":[', b'":{', b'":[{"')


def cells(stack) -> list[tuple[int, int]]:
    out = []
    while stack is not None:
        out.append((stack[0], stack[1]))
        stack = stack[2]
    return out


def norm(config):
    """A configuration as plain data (lexers by their terminal set)."""
    return None if config is None else (cells(config[0]), config[1].terminals, config[2])


def exactly(grammar, fn, *args):
    grammar.memoize = False
    try:
        return fn(*args)
    finally:
        grammar.memoize = True


def touched(fn, config):
    touch = Touch(config[0][1])
    return fn(config, touch), touch.low, touch.hit_limit


def check_step(grammar, config, texts: list[bytes]) -> list[tuple[bytes, tuple]]:
    """Memoised and plain results agree for every token from ``config``; returns the successors."""
    for check in (grammar.is_complete, grammar.can_continue):
        assert check(config) == exactly(grammar, check, config), check.__name__
    memo = touched(grammar.is_complete, config)
    assert memo == exactly(grammar, touched, grammar.is_complete, config)
    assert grammar.lexer_for(config[0]) is exactly(grammar, grammar.lexer_for, config[0])
    successors = []
    for data in texts:
        got = grammar.feed_bytes(config, data)
        assert norm(got) == norm(exactly(grammar, grammar.feed_bytes, config, data)), data
        if got is not None:
            successors.append((data, got))
    return successors


def walk_and_check(grammar, rng: random.Random, *, steps: int, openers: float = 0.0) -> int:
    """A random walk checking every token at every step; ``openers`` biases it towards nesting."""
    tok = grammar.tokenizer
    texts = [tok.vocab[t] for t in tok.text_ids]
    config = grammar.initial_config()
    highest = 0
    for _ in range(steps):
        successors = check_step(grammar, config, texts)
        if not successors or (grammar.is_complete(config) and rng.random() < 0.1):
            config = grammar.initial_config()  # start over: the memos stay warm
            continue
        nesting = [s for s in successors if s[0] in OPENERS]
        pool = nesting if nesting and rng.random() < openers else successors
        config = rng.choice(pool)[1]
        highest = max(highest, config[0][1])
    return highest


@pytest.mark.parametrize("name,text", [("json", JSON_GRAMMAR), ("arith", ARITH_GRAMMAR), ("sql", SQL_GRAMMAR),
                                       ("unicode", UNICODE_GRAMMAR)])
def test_memoised_steps_equal_plain_steps(name, text):
    grammar = GrammarCompiler(small_tokenizer()).compile_lark(text)
    grammar._memo_min_bytes = 1  # white-box: the small vocabulary's tokens are short; memoise them all
    rng = random.Random(name)
    for _ in range(2):
        walk_and_check(grammar, rng, steps=40)


def test_memos_near_the_stack_depth_limit():
    """Entries made low on the stack are reused close to the limit, where the same token must fail."""
    grammar = GrammarCompiler(small_tokenizer(), max_stack_depth=14).compile_lark(JSON_GRAMMAR)
    grammar._memo_min_bytes = 1
    rng = random.Random(5)
    highest = max(walk_and_check(grammar, rng, steps=80, openers=0.8) for _ in range(2))
    assert highest >= 12  # the walks did reach the limit


def test_recursive_schema_near_the_depth_limit():
    compiler = GrammarCompiler(small_tokenizer(), max_stack_depth=24)
    grammar = compiler.compile_json_schema(bench_schema("recursive_tree"))
    rng = random.Random(9)
    highest = max(walk_and_check(grammar, rng, steps=120, openers=0.7) for _ in range(2))
    assert highest >= 20


def test_is_finished_matches_its_definition():
    grammar = GrammarCompiler(small_tokenizer()).compile_choice(["red", "green", "greenish"])
    for text, finished in [(b"re", False), (b"red", True), (b"green", False), (b"greenish", True)]:
        config = grammar.feed_bytes(grammar.initial_config(), text)
        assert (not grammar.can_continue(config) and grammar.is_complete(config)) == finished
        assert Matcher(grammar).accept_bytes(text)


def test_tiny_memos_shared_by_threads_agree_with_plain():
    """Matchers of one grammar in threads, with memos so small they start afresh all the time."""
    tok = small_tokenizer()
    texts = [b'{"a":[1,2,{"b":"x\\u00e9"}],"c":null}', b'[true,false,{"k":-1.5e3}]', b'[[[{"d":[[]]}]],"\xc3\xa9"]']
    shared = GrammarCompiler(tok).compile_lark(JSON_GRAMMAR)  # LR state numbers differ between compiles
    shared.memoize = False
    expected = {}
    for text in texts:
        config, expected[text] = shared.initial_config(), []
        for tid in greedy_tokenize(tok, text):
            config = shared.feed_bytes(config, tok.vocab[tid])
            expected[text].append((norm(config), shared.is_complete(config), shared.can_continue(config)))
    shared.memoize = True
    shared._lexing_size, shared._memo_min_bytes = 7, 1  # white-box: force the start-afresh path of every memo
    for memo in (shared._crossings, shared._lexer_memo, shared._completes, shared._continues):
        memo._capacity = 3
    failures: list[str] = []

    def run(i: int) -> None:
        text = texts[i % len(texts)]
        for _ in range(15):
            matcher = Matcher(shared)
            for step, tid in enumerate(greedy_tokenize(tok, text)):
                if not matcher.accept_token(tid):
                    failures.append(f"{text!r}: token {step} rejected")
                    return
                config = matcher._history[-1][0]
                got = (norm(config), shared.is_complete(config), shared.can_continue(config))
                if got != expected[text][step]:
                    failures.append(f"{text!r}: step {step} differs")
                    return

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


def test_special_and_empty_inputs_stay_exact():
    grammar = GrammarCompiler(small_tokenizer()).compile_lark(JSON_GRAMMAR)
    config = grammar.initial_config()
    assert grammar.feed_bytes(config, b"") == config
    assert grammar.feed_bytes(config, b"}") is None and grammar.feed_bytes(config, b"}") is None
    matcher = Matcher(grammar)
    assert not matcher.accept_token(SPECIAL_ID) and not matcher.accept_token(EOS_ID)
