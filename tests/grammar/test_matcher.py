"""Matcher: masks equal brute force at every step, walks are sound, rollback/reset/EOS/forced tokens."""
from __future__ import annotations

import random
import re

import lark
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher, allocate_token_bitmask
from lightllm_struct.grammar.bitmask import unpack_bitmask
from lightllm_struct.grammar.errors import InvalidTokenError, MatcherStateError
from tests.grammar.grammar_helpers import (ARITH_GRAMMAR, JSON_GRAMMAR, SQL_GRAMMAR, UNICODE_GRAMMAR,
                                           brute_force_allowed, greedy_tokenize, random_walk)
from tests.grammar.small_vocab import EOS_ID, SPECIAL_ID, small_tokenizer

GRAMMARS = {"json": JSON_GRAMMAR, "arith": ARITH_GRAMMAR, "sql": SQL_GRAMMAR, "unicode": UNICODE_GRAMMAR}
REGEXES = [r"[a-c]{2,5}", r"(ab|cd)*e", r"é+ü?中?", r"[0-9]{3}-[0-9]{2}", r'"[^"]{0,3}"', r"(true|false|null)"]


@pytest.fixture(scope="module", params=["trie", "matrix"])
def compiler(request):
    return GrammarCompiler(small_tokenizer(), scanner=request.param)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_lark_masks_match_brute_force(compiler, name):
    grammar = compiler.compile_lark(GRAMMARS[name])
    rng = random.Random(hash(name) % 1000)
    for _ in range(2):
        random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=30, check_masks=True)


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_masks_match_brute_force(compiler, pattern):
    grammar = compiler.compile_regex(pattern)
    rng = random.Random(7)
    for _ in range(2):
        random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=12, check_masks=True)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_lark_walks_are_sound(name):
    grammar = GrammarCompiler(small_tokenizer()).compile_lark(GRAMMARS[name])
    earley = lark.Lark(GRAMMARS[name], parser="earley")
    rng = random.Random(1)
    finished = 0
    for _ in range(40):
        text, ended, _ = random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=60, eos_bias=0.6)
        if ended:
            earley.parse(text.decode("utf-8"))  # raises if the engine let an invalid sentence through
            finished += 1
    assert finished >= 10


@pytest.mark.parametrize("pattern", REGEXES)
def test_regex_walks_are_sound(pattern):
    grammar = GrammarCompiler(small_tokenizer()).compile_regex(pattern)
    rng = random.Random(3)
    for _ in range(30):
        text, ended, _ = random_walk(grammar, rng, eos_ids={EOS_ID}, max_steps=40, eos_bias=0.6)
        assert ended
        assert re.fullmatch(pattern, text.decode("utf-8")), text


def _mask(matcher) -> list[int]:
    mask = allocate_token_bitmask(2, matcher.grammar.tokenizer.vocab_size)
    matcher.fill_next_token_bitmask(mask, index=1)
    assert (mask[0] == -1).all()  # other rows untouched
    return unpack_bitmask(mask[1], matcher.grammar.tokenizer.vocab_size).nonzero()[0].tolist()


def test_rollback_and_reset_restore_masks():
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_lark(JSON_GRAMMAR)
    ids = greedy_tokenize(tok, '{"name":"abc é","age":[1,2.5,{"id":null}],"ok":true}'.encode())
    assert len(ids) > 10
    matcher = Matcher(grammar)
    masks = []
    for tid in ids:
        masks.append(_mask(matcher))
        assert matcher.accept_token(tid)
    for back in (1, 3, 7):
        matcher.rollback(back)
        assert _mask(matcher) == masks[len(ids) - back]
        for tid in ids[len(ids) - back:]:
            assert matcher.accept_token(tid)
    matcher.reset()
    assert matcher.num_accepted_tokens == 0 and _mask(matcher) == masks[0]
    with pytest.raises(MatcherStateError):
        matcher.rollback(1)


def test_eos_only_when_complete_and_terminal_after():
    tok = small_tokenizer()
    matcher = Matcher(GrammarCompiler(tok).compile_lark(JSON_GRAMMAR))
    assert not matcher.accept_token(EOS_ID)
    assert matcher.accept_bytes(b'{"a":[1,2]')
    assert EOS_ID not in _mask(matcher) and not matcher.is_complete()
    assert matcher.accept_bytes(b"}")
    # a closed value with compact JSON: nothing but EOS can follow
    assert _mask(matcher) == [EOS_ID] and matcher.is_terminated()
    assert matcher.accept_token(EOS_ID) and matcher.is_terminated()
    assert not matcher.accept_token(tok.token_of_bytes[b" "])
    assert _mask(matcher) == [EOS_ID]


def test_number_may_continue_or_end():
    matcher = Matcher(GrammarCompiler(small_tokenizer()).compile_lark(JSON_GRAMMAR))
    assert matcher.accept_bytes(b"12")
    allowed = _mask(matcher)
    assert EOS_ID in allowed and not matcher.is_terminated()
    assert small_tokenizer().token_of_bytes[b"3"] in allowed


def test_special_and_invalid_tokens():
    tok = small_tokenizer()
    matcher = Matcher(GrammarCompiler(tok).compile_regex(r".*"))
    assert SPECIAL_ID not in _mask(matcher)
    assert not matcher.accept_token(SPECIAL_ID)
    with pytest.raises(InvalidTokenError):
        matcher.accept_token(tok.vocab_size)
    with pytest.raises(InvalidTokenError):
        matcher.accept_token(-1)


def test_forced_tokens_follow_the_grammar():
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_lark(r'start: "{\"name\":" STRING "}"' + "\n" + r'STRING: /"[a-z]*"/')
    matcher = Matcher(grammar)
    forced = matcher.forced_tokens()
    assert b"".join(tok.vocab[t] for t in forced) == b'{"name":"'
    assert len(forced) < len(b'{"name":"')  # multi-byte tokens were used
    for tid in forced:
        assert matcher.accept_token(tid)
    assert matcher.forced_tokens() == []  # inside the string the model chooses
    assert matcher.accept_bytes(b'abc"')
    assert [tok.vocab[t] for t in matcher.forced_tokens()] == [b"}"]


def test_forced_tokens_empty_at_choice_and_after_end():
    tok = small_tokenizer()
    matcher = Matcher(GrammarCompiler(tok).compile_choice(["red", "green"]))
    assert matcher.forced_tokens() == []
    assert matcher.accept_bytes(b"gr")
    assert b"".join(tok.vocab[t] for t in matcher.forced_tokens()) == b"een"
    assert matcher.accept_bytes(b"een")
    assert matcher.forced_tokens() == [] and matcher.is_terminated()


def test_stack_depth_limit_stops_nesting():
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok, max_stack_depth=8).compile_lark(JSON_GRAMMAR)
    matcher = Matcher(grammar)
    depth = 0
    while matcher.accept_bytes(b"["):
        depth += 1
        assert depth < 20
    assert 0 < depth < 8
    assert _mask(matcher) == brute_force_allowed(matcher, tok.vocab_size)
    assert matcher.accept_bytes(b"]" * depth) and matcher.is_terminated()


def test_matchers_share_a_grammar_independently():
    grammar = GrammarCompiler(small_tokenizer()).compile_lark(ARITH_GRAMMAR)
    a, b = Matcher(grammar), Matcher(grammar)
    assert a.accept_bytes(b"1+(")
    assert b.accept_bytes(b"2*3")
    assert _mask(b) == brute_force_allowed(b, small_tokenizer().vocab_size)
    assert _mask(a) == brute_force_allowed(a, small_tokenizer().vocab_size)


@pytest.mark.parametrize("pattern", [r'"[a-z ]{0,90}"', r"(ab|é){0,70}x"])
def test_long_counted_repeats_share_masks_and_stay_exact(compiler, pattern):
    tok = small_tokenizer()
    grammar = compiler.compile_regex(pattern)
    random_walk(grammar, random.Random(11), eos_ids={EOS_ID}, max_steps=45, check_masks=True, eos_bias=0.05)
    matcher = Matcher(grammar)
    bases = set()
    for _ in range(10):  # far from the bound, positions are indistinguishable within a token's length
        assert matcher.accept_bytes(b'"a' if not matcher.num_accepted_tokens and pattern[0] == '"' else b"ab")
        _mask(matcher)
        config = matcher._history[-1][0]
        bases.add(config[1].mask_base[config[2]])
    assert len(bases) <= 3
    assert tok.max_token_len < 20


def test_concurrent_matchers_on_one_grammar_agree_with_serial():
    import threading

    tok = small_tokenizer()
    texts = [b'{"a":[1,2,{"b":"x\\u00e9"}],"c":null}', b'[true,false,{"k":-1.5e3}]', b'"\xc3\xa9\\n"']
    serial_grammar = GrammarCompiler(tok).compile_lark(JSON_GRAMMAR)

    def masks_of(grammar, text):
        matcher, out = Matcher(grammar), []
        for tid in greedy_tokenize(tok, text):
            out.append(_mask(matcher))
            assert matcher.accept_token(tid)
        return out

    expected = [masks_of(serial_grammar, t) for t in texts]
    shared = GrammarCompiler(tok, scanner="matrix").compile_lark(JSON_GRAMMAR)
    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, masks_of(shared, texts[i % 3])))
               for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == expected[i % 3] for i in range(6))


def test_rollback_after_memoised_steps_matches_plain_replay():
    """Random accepts and rollbacks through warm memos; every state equals a plain replay of the bytes."""
    from tests.grammar.test_compiled import norm

    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_lark(JSON_GRAMMAR)
    grammar._memo_min_bytes = 1  # white-box: memoise the small vocabulary's short tokens too
    rng = random.Random(3)
    matcher, accepted = Matcher(grammar), []
    for _ in range(150):
        if accepted and rng.random() < 0.3:
            back = rng.randint(1, len(accepted))
            matcher.rollback(back)
            del accepted[len(accepted) - back:]
        else:
            allowed = [t for t in matcher.allowed_token_ids() if t != EOS_ID]
            if not allowed or len(accepted) > 40:
                matcher.reset()
                accepted.clear()
                continue
            accepted.append(rng.choice(allowed))
            assert matcher.accept_token(accepted[-1])
        grammar.memoize = False
        expected = grammar.feed_bytes(grammar.initial_config(), b"".join(tok.vocab[t] for t in accepted))
        complete = grammar.is_complete(expected)
        finished = complete and not grammar.can_continue(expected)
        grammar.memoize = True
        assert norm(matcher._history[-1][0]) == norm(expected)
        assert matcher.is_complete() == complete and matcher.is_terminated() == finished


def test_masks_cached_low_on_the_stack_stay_exact_near_the_limit():
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok, max_stack_depth=8).compile_lark(JSON_GRAMMAR)
    low = Matcher(grammar)
    assert low.accept_bytes(b'["ab')
    low.allowed_token_ids()  # caches the mask inside a string, keyed by the top of the stack only
    deep = Matcher(grammar)
    assert deep.accept_bytes(b"[" * 6 + b'"ab')  # same top, but '","' would now open past the limit
    assert deep.allowed_token_ids() == brute_force_allowed(deep, tok.vocab_size)
