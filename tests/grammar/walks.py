"""Drive a Matcher through the public API only: random walks over allowed tokens and forced traces.

The helpers read the bitmask themselves (bit j of word i = token 32*i+j) instead of trusting any engine
helper, so the property tests check the engine against an independent reading of its own output.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from lightllm_struct.grammar import Matcher, allocate_token_bitmask


def allowed_ids(mask, vocab_size: int) -> np.ndarray:
    """Token ids whose bit is set in row 0 of an int32 bitmask."""
    words = np.ascontiguousarray(mask[0].numpy()).view(np.uint8)
    bits = np.unpackbits(words, bitorder="little")[:vocab_size]
    return np.flatnonzero(bits)


@dataclass
class Walk:
    tokens: list[int]
    text: bytes
    ended: bool  # True when the walk chose EOS (the output must then be a whole sentence)


def random_walk(grammar, vocab: list[bytes], eos_ids: list[int], rng: random.Random, *, soft_cap: int = 60,
                hard_cap: int = 400, p_eos: float = 0.3, closers: tuple[bytes, ...] = ()) -> Walk:
    """Pick any allowed token at each step until EOS is picked, the matcher terminates, or hard_cap.

    After ``soft_cap`` tokens the walk takes EOS whenever allowed and otherwise prefers tokens made only of
    ``closers`` (e.g. ``"``, ``}``, ``]``), so unbounded grammars still finish. Asserts that the mask is never
    empty before termination (no dead ends) and that a non-EOS allowed token is accepted.
    """
    matcher = Matcher(grammar)
    mask = allocate_token_bitmask(1, len(vocab))
    eos = set(eos_ids)
    tokens: list[int] = []
    while len(tokens) < hard_cap:
        if matcher.is_terminated():
            return Walk(tokens, b"".join(vocab[t] for t in tokens), True)
        matcher.fill_next_token_bitmask(mask, index=0)
        allowed = allowed_ids(mask, len(vocab))
        assert len(allowed), f"dead end after {b''.join(vocab[t] for t in tokens)!r}"
        ends = [int(t) for t in allowed if int(t) in eos]
        if ends and (len(tokens) >= soft_cap or rng.random() < p_eos):
            assert matcher.accept_token(ends[0])
            return Walk(tokens, b"".join(vocab[t] for t in tokens), True)
        text_ids = [int(t) for t in allowed if int(t) not in eos]
        if not text_ids:  # only EOS allowed: the output is complete
            assert matcher.accept_token(ends[0])
            return Walk(tokens, b"".join(vocab[t] for t in tokens), True)
        token = _pick(text_ids, vocab, rng, closers if len(tokens) >= soft_cap else ())
        assert matcher.accept_token(token), f"allowed token {token} ({vocab[token]!r}) rejected"
        tokens.append(token)
    return Walk(tokens, b"".join(vocab[t] for t in tokens), False)


def _pick(candidates: list[int], vocab: list[bytes], rng: random.Random, closers: tuple[bytes, ...]) -> int:
    if closers:
        closing = [t for t in candidates if vocab[t] and all(bytes([b]) in closers for b in vocab[t])]
        if closing and rng.random() < 0.9:
            return rng.choice(closing)
    return rng.choice(candidates)


def force_trace(grammar, vocab_size: int, tokens: list[int], eos_ids: list[int]) -> str:
    """Feed ``tokens`` then EOS; 'ok', or the first step where the mask or accept_token refused."""
    matcher = Matcher(grammar)
    mask = allocate_token_bitmask(1, vocab_size)
    for step, token in enumerate(tokens):
        matcher.fill_next_token_bitmask(mask, index=0)
        if token not in set(allowed_ids(mask, vocab_size).tolist()):
            return f"token {step} ({token}) masked off"
        if not matcher.accept_token(token):
            return f"token {step} ({token}) rejected"
    matcher.fill_next_token_bitmask(mask, index=0)
    ends = [e for e in eos_ids if e in set(allowed_ids(mask, vocab_size).tolist())]
    if not ends:
        return "EOS masked off at the end"
    if not matcher.accept_token(ends[0]) or not matcher.is_terminated():
        return "EOS did not terminate"
    return "ok"


def random_segmentation(data: bytes, token_of_bytes: dict[bytes, int], max_len: int, rng: random.Random,
                        *, prefer_short: float = 0.5) -> list[int]:
    """A random tokenization of ``data`` into vocabulary tokens (a random walk over the token trie).

    Any spelling is valid output for a model, so an engine must accept them all. Needs every single byte
    to be a token (true of byte-level BPE and byte-fallback vocabularies) so that no walk gets stuck.
    """
    out, pos = [], 0
    while pos < len(data):
        options = [data[pos:pos + n] for n in range(1, min(max_len, len(data) - pos) + 1)
                   if data[pos:pos + n] in token_of_bytes]
        assert options, f"no token spells {data[pos:pos + 8]!r}"
        piece = options[0] if rng.random() < prefer_short * 0.3 else rng.choice(options)
        out.append(token_of_bytes[piece])
        pos += len(piece)
    return out
