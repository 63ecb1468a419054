"""Shared checks for grammar-engine tests: brute-force masks and random walks."""
from __future__ import annotations

import random
import re

from lightllm_struct.grammar import Matcher

JSON_GRAMMAR = r"""
start: value
?value: object | array | STRING | NUMBER | "true" | "false" | "null"
object: "{" [pair ("," pair)*] "}"
array: "[" [value ("," value)*] "]"
pair: STRING ":" value
STRING: /"([^"\\]|\\.)*"/
NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/
"""

ARITH_GRAMMAR = r"""
start: expr
?expr: expr "+" term | term
?term: term "*" factor | factor
?factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]+/
%ignore " "
"""

SQL_GRAMMAR = r"""
start: "SELECT" cols "FROM" NAME where?
where: "WHERE" NAME "=" (NUMBER | STRING)
cols: "*" | NAME ("," NAME)*
NAME: /[a-zA-Z_][a-zA-Z_0-9]*/
NUMBER: /[0-9]+/
STRING: /'[^']*'/
%ignore /[ \n]+/
"""

UNICODE_GRAMMAR = r"""
start: WORD ("中" WORD)* "!"?
WORD: /[a-zé😀]+/
"""


def brute_force_allowed(matcher: Matcher, vocab_size: int) -> list[int]:
    """Allowed tokens by trying every token on the matcher and undoing it."""
    out = []
    for tid in range(vocab_size):
        if matcher.accept_token(tid):
            out.append(tid)
            matcher.rollback(1)
    return out


def random_walk(grammar, rng: random.Random, *, eos_ids, max_steps: int = 80, check_masks: bool = False,
                eos_bias: float = 0.35) -> tuple[bytes, bool, list[int]]:
    """Sample allowed tokens until EOS (or ``max_steps``); optionally check every mask by brute force.

    Returns the text produced, whether the walk ended with EOS, and the token ids taken.
    """
    matcher = Matcher(grammar)
    tok = grammar.tokenizer
    text, ids = b"", []
    for _ in range(max_steps):
        allowed = matcher.allowed_token_ids()
        if check_masks:
            assert allowed == brute_force_allowed(matcher, tok.vocab_size), f"mask differs after {text!r}"
        assert allowed, f"dead end after {text!r}"
        eos = [t for t in allowed if t in eos_ids]
        tid = eos[0] if eos and rng.random() < eos_bias else rng.choice(allowed)
        assert matcher.accept_token(tid)
        ids.append(tid)
        if tid in eos_ids:
            assert matcher.is_terminated()
            return text, True, ids
        text += tok.vocab[tid]
    return text, False, ids


def greedy_tokenize(tok, data: bytes) -> list[int]:
    """Longest-match tokenization with the test vocabulary (every single byte is a token)."""
    ids, pos = [], 0
    while pos < len(data):
        for end in range(min(len(data), pos + tok.max_token_len), pos, -1):
            if data[pos:end] in tok.token_of_bytes:
                ids.append(tok.token_of_bytes[data[pos:end]])
                pos = end
                break
    return ids


def assert_dfa_agrees_with_re(dfa, pattern: str, alphabet: list[str], *, samples: int, max_len: int) -> None:
    """Random strings over ``alphabet`` (seeded by the pattern): the byte DFA accepts exactly what
    ``re.fullmatch`` (ASCII classes) accepts."""
    rng = random.Random(pattern)
    for _ in range(samples):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))
        assert dfa.fullmatch(text.encode("utf-8")) == bool(re.fullmatch(pattern, text, re.ASCII)), text
