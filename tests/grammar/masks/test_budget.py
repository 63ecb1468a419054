"""Budget-aware masks: walks that push the output as long as they can still end valid within the budget.

Every walk takes the allowed token that pushes the shortest finish furthest (then the longest token), or a
random one; under any budget from the shortest answer up it must end with a whole sentence by its last
token. Outputs are checked by jsonschema, lark and re, never by the engine.
"""
from __future__ import annotations

import json
import random
import re

import jsonschema
import lark
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher
from tests.grammar.small_vocab import small_tokenizer
from tests.grammar.vocab_fixtures import compiler as vocab_compiler

SCHEMAS = {
    "strings": {"type": "object", "required": ["name", "notes"],
                "properties": {"name": {"type": "string"}, "notes": {"type": "string"}}},
    "arrays": {"type": "object", "required": ["tags", "grid"],
               "properties": {"tags": {"type": "array", "items": {"type": "string"}},
                              "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}}},
    "recursion": {"$defs": {"node": {"type": "object", "required": ["v", "kids"],
                                     "properties": {"v": {"type": "number"},
                                                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
                  "$ref": "#/$defs/node"},
    "free": {"type": "object"},
    # One token (the "{" of an item) pushes the shortest finish out by ~100 bytes at once: more than the
    # 64-byte margin the engine used to wait for before checking.
    "jump": {"type": "object", "required": ["items"], "additionalProperties": False,
             "properties": {"items": {"type": "array", "items": {
                 "type": "object", "required": ["q" * 40, "z" * 40], "additionalProperties": False,
                 "properties": {"q" * 40: {"type": "string"}, "z" * 40: {"type": "array", "items": {"type": "string"}}}}}}},
    "nesting": {"type": "object", "required": ["a"], "properties": {"a": {"type": "array", "items": {
        "type": "array", "items": {"type": "object", "required": ["b"], "properties": {
            "b": {"type": "array", "items": {"type": "object", "required": ["c"],
                                             "properties": {"c": {"type": "string"}}}}}}}}}},
}
LARK = 'start: expr\nexpr: term (("+"|"*") term)*\nterm: NUMBER | "(" expr ")" | NAME "(" expr ")"\n' \
       'NUMBER: /[0-9]+/\nNAME: /[a-z]+/\n%ignore " "'
REGEX = r"(ab|c[a-z]*d)+-[0-9]{2,}"
CHOICES = ["no", "perhaps", "definitely yes"]


def _walk(matcher: Matcher, vocab: list[bytes], eos: set[int], budget: int, rng: random.Random, greedy: float):
    """Up to ``budget`` tokens, as long-winded as the masks allow; returns the text bytes."""
    out = []
    for step in range(budget):
        if matcher.is_terminated():
            break
        allowed = matcher.allowed_token_ids(max_tokens_left=budget - step)
        assert allowed, f"empty mask after {b''.join(out)!r}"
        text = [t for t in allowed if t not in eos]
        if not text:
            assert matcher.accept_token(allowed[0])
            break
        if rng.random() < greedy:
            token = max(text, key=lambda t: (_finish_after(matcher, t), len(vocab[t])))
        else:
            token = rng.choice(text)
        assert matcher.accept_token(token)
        out.append(vocab[token])
    assert matcher.is_complete(), f"budget {budget} ran out before a whole sentence: {b''.join(out)!r}"
    return b"".join(out)


def _finish_after(matcher: Matcher, token: int) -> float:
    matcher.accept_token(token)
    try:
        return matcher.shortest_finish()
    finally:
        matcher.rollback(1)


def _budgets(grammar, extra: int = 24, step: int = 3):
    start = int(grammar.distances.start)
    return range(start, start + extra, step)


def _old_margin_walk(matcher: Matcher, vocab: list[bytes], budget: int, margin: int) -> bytes:
    """The adversarial walk under the engine's former policy: the budget reached the mask only once the
    slack (tokens left - 1 - shortest finish) fell below ``margin``."""
    out = []
    for step in range(budget):
        if matcher.is_terminated():
            break
        left = budget - step
        near = left - 1 - matcher.shortest_finish() < margin
        allowed = [t for t in matcher.allowed_token_ids(max_tokens_left=left if near else None) if vocab[t]]
        token = max(allowed, key=lambda t: (_finish_after(matcher, t), len(vocab[t])))
        assert matcher.accept_token(token)
        out.append(vocab[token])
    return b"".join(out)


def test_one_token_jumping_past_the_old_margin_still_ends_valid():
    """The soundness hole of a margin: far from the budget the "{" of an item is allowed unchecked, and
    the finish it opens no longer fits. Checked at every step, the same walk ends valid."""
    tok = small_tokenizer()
    schema = SCHEMAS["jump"]
    grammar = GrammarCompiler(tok).compile_json_schema(schema)
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(b'{"items":[')
    before = matcher.shortest_finish()
    assert matcher.accept_token(tok.token_of_bytes[b"{"])
    assert matcher.shortest_finish() - before > 64  # one token, a jump of more than the old margin
    budget = int(grammar.distances.start) + 70
    with pytest.raises(ValueError):  # the old policy ran out of budget inside an item
        json.loads(_old_margin_walk(Matcher(grammar), tok.vocab, budget, margin=64))
    text = _walk(Matcher(grammar), tok.vocab, set(tok.eos_token_ids), budget, random.Random(0), greedy=1.0)
    jsonschema.validate(json.loads(text), schema)


def _exact_drop(matcher: Matcher, vocab: list[bytes], left: int) -> set[int]:
    """Ground truth: the allowed text tokens after which the shortest finish exceeds ``left - 1``."""
    return {t for t in matcher.allowed_token_ids() if vocab[t] and _finish_after(matcher, t) > left - 1}


@pytest.mark.parametrize("name", ["recursion", "nesting", "jump"])
def test_masks_cached_by_stack_shape_equal_the_exact_check(name):
    """A budget mask served from the shape cache (another request, or deeper in a recursion, with the same
    top and relative vectors) is exactly the mask of feeding each token and measuring its finish."""
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_json_schema(SCHEMAS[name])
    rng = random.Random(name)
    for walk in range(4):  # later walks meet the shapes the first ones cached
        matcher = Matcher(grammar)
        budget = int(grammar.distances.start) + 40
        for step in range(budget):
            if matcher.is_terminated():
                break
            left = budget - step
            allowed = set(matcher.allowed_token_ids(max_tokens_left=left))
            free = set(matcher.allowed_token_ids())
            assert free - allowed == _exact_drop(matcher, tok.vocab, left), (walk, step)
            text = [t for t in allowed if tok.vocab[t]]
            if not text:
                break
            token = max(text, key=lambda t: (_finish_after(matcher, t), rng.random())) if walk % 2 else \
                rng.choice(text)
            assert matcher.accept_token(token)
        assert matcher.is_complete()


def test_a_vocabulary_missing_a_byte_measures_finishes_through_single_byte_tokens():
    """Without a single-byte token for ``a`` the finish "aaa" is not 3 tokens (it cannot be spelt at all
    after "aa"): distances step only through bytes that are tokens, and walks still end valid."""
    from lightllm_struct.grammar import TokenizerInfo

    full = small_tokenizer()
    assert full.every_byte_a_token
    tok = TokenizerInfo.from_vocab([v for v in full.vocab if v != b"a"], eos_token_ids=[0], special_token_ids=[1])
    assert tok.missing_single_bytes == (ord("a"),) and not tok.every_byte_a_token
    ok = TokenizerInfo.from_vocab([v for v in full.vocab if v not in (b"\xff", b"\xc0")], eos_token_ids=[0])
    assert ok.every_byte_a_token  # bytes no UTF-8 text holds are not needed
    regex = "x(aaa|bbbbb)"
    grammar = GrammarCompiler(tok).compile_regex(regex)
    assert grammar.distances.start == 6 and grammar.distances.start_any == 4
    assert grammar.min_output_tokens() == 1  # "xaaa" might be one token somewhere: refused only below that
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(b"x")
    aa = tok.token_of_bytes[b"aa"]
    assert aa in matcher.allowed_token_ids() and aa not in matcher.allowed_token_ids(max_tokens_left=100)
    rng = random.Random(5)
    for budget in range(6, 12):
        for greedy in (1.0, 0.0):
            text = _walk(Matcher(grammar), tok.vocab, set(tok.eos_token_ids), budget, rng, greedy).decode()
            assert re.fullmatch(regex, text), text


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_json_schema_walks_end_valid_within_the_budget(name):
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_json_schema(SCHEMAS[name])
    rng = random.Random(name)
    # "jump": budgets past the ~90 bytes an item opens, so that walks do open items
    for budget in _budgets(grammar, 130, 13) if name == "jump" else _budgets(grammar):
        for greedy in (1.0, 0.6, 0.0):
            text = _walk(Matcher(grammar), tok.vocab, set(tok.eos_token_ids), budget, rng, greedy)
            jsonschema.validate(json.loads(text), SCHEMAS[name])


def test_lark_regex_and_choice_walks_end_valid_within_the_budget():
    tok = small_tokenizer()
    comp = GrammarCompiler(tok)
    parser = lark.Lark(LARK, parser="lalr")
    checks = [(comp.compile_lark(LARK), lambda s: parser.parse(s)),
              (comp.compile_regex(REGEX), lambda s: re.fullmatch(REGEX, s) or pytest.fail(f"{s!r} !~ {REGEX}")),
              (comp.compile_choice(CHOICES), lambda s: s in CHOICES or pytest.fail(f"{s!r} not a choice"))]
    rng = random.Random(7)
    for grammar, check in checks:
        for budget in _budgets(grammar, 12):
            for greedy in (1.0, 0.5, 0.0):
                check(_walk(Matcher(grammar), tok.vocab, set(tok.eos_token_ids), budget, rng, greedy).decode())


def test_far_budget_changes_nothing_and_tight_budget_narrows():
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_json_schema(SCHEMAS["strings"])
    matcher = Matcher(grammar)
    assert matcher.accept_bytes(b'{"name":"ab')
    free = matcher.allowed_token_ids()
    assert matcher.allowed_token_ids(max_tokens_left=1000) == free
    tight = matcher.allowed_token_ids(max_tokens_left=int(matcher.shortest_finish()))
    assert set(tight) < set(free)
    assert tok.token_of_bytes[b'"'] in tight and tok.token_of_bytes[b"a"] not in tight


def test_min_output_tokens_is_the_optimistic_token_count():
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_json_schema(
        {"type": "object", "required": ["s"], "properties": {"s": {"type": "string", "minLength": 40}}})
    shortest = len('{"s":""}') + 40
    assert grammar.distances.start == shortest
    assert grammar.min_output_tokens() == -(-shortest // tok.max_token_len)


def test_llama3_vocabulary_walk_ends_valid():
    comp = vocab_compiler("llama3")
    tok = comp.tokenizer
    assert all(bytes([b]) in tok.token_of_bytes for b in range(256))  # every byte is a token
    schema = SCHEMAS["strings"]
    grammar = comp.compile_json_schema(schema)
    rng = random.Random(3)
    for budget in (int(grammar.distances.start), 30):
        text = _walk(Matcher(grammar), tok.vocab, set(tok.eos_token_ids), budget, rng, greedy=0.0)
        jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize("make", ["json_object", "flexible"])
def test_whitespace_is_bounded(make):
    """No position of a JSON grammar takes more than a bounded run of whitespace (json_object: none)."""
    comp = GrammarCompiler(small_tokenizer())
    grammar = comp.compile_json_object() if make == "json_object" else comp.compile_json_schema(
        SCHEMAS["arrays"], whitespace="flexible")
    config = grammar.initial_config()
    for prefix in [b"", b"{", b'{"tags"', b'{"tags":', b'{"tags":[', b'{"tags":[]', b'{"tags":[],']:
        at = grammar.feed_bytes(config, prefix)
        assert at is not None
        run = 0
        for byte in b" \n" + b" " * 200:
            at = grammar.feed_bytes(at, bytes([byte]))
            if at is None:
                break
            run += 1
        # flexible: at most two runs of FLEX_WS (two spaces, a newline, 40 of indent) between two tokens
        assert run <= (0 if make == "json_object" else 2 * (2 + 1 + 40)), (prefix, run)


def test_tool_call_turn_in_auto_mode_finishes_the_started_call():
    """A turn grammar is one grammar: once the walk has opened a call, the arguments close in time."""
    from lightllm_struct.grammar.structural import CallSpec, TurnSpec, turn_grammar

    args = SCHEMAS["strings"]
    head = '<tool_call>\n{"name": "save", "arguments": '
    spec = TurnSpec(calls=(CallSpec("save", head, args, "}\n</tool_call>"),), mode="auto", separator="\n",
                    triggers=("<tool_call>",))
    turn = turn_grammar(spec)
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_lark(turn.lark)
    rng = random.Random(11)
    for budget in (34, 45, 60):
        matcher = Matcher(grammar)
        opened = head.encode() + b'{"name": "'
        assert matcher.accept_bytes(opened)  # the model started a call, then writes as long as it may
        text = opened + _walk(matcher, tok.vocab, set(tok.eos_token_ids), budget, rng, greedy=0.8)
        body = text.decode()[len(head):-len("}\n</tool_call>")]
        jsonschema.validate(json.loads(body), args)
        assert lark.Lark(turn.lark, parser="lalr").parse(text.decode())


def _longest_blank_run(grammar, config, limit: int = 300) -> int:
    """The longest run of whitespace bytes (any mix of space, newline, tab, return) from ``config``."""
    frontier, run = {config}, 0
    while frontier and run < limit:
        frontier = {nxt for c in frontier for b in b" \n\t\r" if (nxt := grammar.feed_bytes(c, bytes([b])))}
        run += bool(frontier)
    return run


@pytest.mark.parametrize("mode", ["required", "auto"])
def test_tool_turn_whitespace_is_bounded(mode):
    """No position of a tool-call turn outside free text (the blank after reasoning, between calls, inside
    the arguments, a free ``{"type": "object"}`` as json_object has it) takes an endless run of whitespace."""
    from lightllm_struct.grammar.structural import CallSpec, Reasoning, TurnSpec, turn_grammar

    calls = (CallSpec("save", '<tool_call>\n{"name": "save", "arguments": ', SCHEMAS["arrays"], "}\n</tool_call>"),
             CallSpec("any", '<tool_call>\n{"name": "any", "arguments": ', {"type": "object"}, "}\n</tool_call>"))
    spec = TurnSpec(calls=calls, mode=mode, parallel=True, separator="\n", triggers=("<tool_call>",),
                    reasoning=Reasoning(max_units=64), whitespace="flexible")
    tok = small_tokenizer()
    grammar = GrammarCompiler(tok).compile_lark(turn_grammar(spec).lark)
    head = b'<think>ok</think>'
    opened = head + (b"\n\n" if mode == "required" else b"") + b'<tool_call>\n{"name": "save", "arguments": '
    prefixes = [head] if mode == "required" else []  # in auto, free text follows reasoning: text may be blank
    prefixes += [opened] + [opened + p for p in (
        b"{", b'{"tags"', b'{"tags":', b'{"tags":[', b'{"tags":["x"', b'{"tags":["x"],', b'{"tags":[],"grid":[[1',
        b'{"tags":[],"grid":[]}', b'{"tags":[],"grid":[]}}\n</tool_call>')]
    anyhead = opened.replace(b"save", b"any")
    prefixes += [anyhead + p for p in (b"{", b'{"k"', b'{"k":', b'{"k":[', b'{"k":{', b'{"k":1,')]
    bound = 2 * (2 + 2 + 40)  # two runs of flexible whitespace (two spaces, "\r\n", 40 of indent)
    for prefix in prefixes:
        config = grammar.feed_bytes(grammar.initial_config(), prefix)
        assert config is not None, prefix
        assert _longest_blank_run(grammar, config) <= bound, prefix
