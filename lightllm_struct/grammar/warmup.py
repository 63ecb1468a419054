"""Warming the grammar machinery of a process before its first constrained request.

The first compile of a process pays what no later one does: numba loads (or compiles) the trie walks and the
product construction, the vocabulary's tables are built, and the terminal DFAs common to JSON schemas
(strings, numbers, keys, punctuation) enter the process-wide cache. A warm-up compiles one small schema that
holds those pieces and walks one instance through masks and accepts, so that a request's first schema costs
what any other new schema costs.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch

# Objects with typed and free-form properties, an enum, a bounded string, an array and a nested object: the
# terminals real schemas start from, in both the key-complement and the closed-object forms.
WARMUP_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "count": {"type": "integer"},
        "score": {"type": "number"},
        "ok": {"type": "boolean"},
        "kind": {"enum": ["a", "b"]},
        "tag": {"type": "string", "maxLength": 8},
        "items": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}},
                                             "additionalProperties": False}},
    },
    "required": ["name", "count"],
}
WARMUP_INSTANCE = {"name": "warm up", "count": 12, "score": -1.5, "ok": True, "kind": "a", "tag": "x",
                   "items": [{"id": 3}]}


@dataclass(frozen=True)
class WarmupReport:
    """What a warm-up did: seconds for the compile and for the walk, and the tokens walked."""

    compile_s: float
    walk_s: float
    tokens: int


def warm_up(compiler) -> WarmupReport:
    """Compile ``WARMUP_SCHEMA`` with ``compiler`` (a ``GrammarCompiler``) and walk it (``warm_walk``).

    Raises
    ------
    RuntimeError
        See ``warm_walk``.
    """
    start = time.perf_counter()
    grammar = compiler.compile_json_schema(WARMUP_SCHEMA)
    walked = warm_walk(grammar)
    return WarmupReport(time.perf_counter() - start - walked.walk_s, walked.walk_s, walked.tokens)


def warm_walk(grammar) -> WarmupReport:
    """Walk ``WARMUP_INSTANCE`` through masks and accepts of ``grammar`` (compiled from ``WARMUP_SCHEMA``),
    taking at each step the longest allowed token that spells the instance's next bytes.

    Raises
    ------
    RuntimeError
        The vocabulary cannot spell the instance under the grammar (no allowed token fits): the grammar
        engine is broken or the vocabulary lacks single bytes.
    """
    from lightllm_struct.grammar.matcher import Matcher

    start = time.perf_counter()
    data = json.dumps(WARMUP_INSTANCE, separators=(",", ":")).encode()
    matcher = Matcher(grammar)
    info = grammar.tokenizer
    mask = torch.zeros(1, info.num_words, dtype=torch.int32)
    pos = tokens = 0
    while pos < len(data):
        matcher.fill_next_token_bitmask(mask)
        token = _longest_allowed(info, mask[0].numpy(), data, pos)
        if token is None or not matcher.accept_token(token):
            raise RuntimeError(f"grammar warm-up: no allowed token spells byte {pos} of the instance")
        pos += len(info.vocab[token])
        tokens += 1
    matcher.fill_next_token_bitmask(mask)
    return WarmupReport(0.0, time.perf_counter() - start, tokens)


def _longest_allowed(info, words, data: bytes, pos: int) -> int | None:
    for end in range(min(len(data), pos + max(info.max_token_len, 1)), pos, -1):
        token = info.token_of_bytes.get(data[pos:end])
        if token is not None and (int(words[token >> 5]) >> (token & 31)) & 1:
            return token
    return None
