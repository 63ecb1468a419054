"""The shared batch fill writes bit for bit the rows each request's own fill writes.

Random walks across several schemas step in lockstep (many requests of one schema, a few of others, free
rows, budgets, finished requests starting over, rows changing owners between steps), and at every step the
batch filler's rows are compared with per-request ``fill_next_token_bitmask`` rows. The per-request rows
are themselves checked against brute force by ``test_matcher.py``/``test_soundness.py``.
"""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lightllm_struct.grammar import GrammarCompiler, Matcher, allocate_token_bitmask
from lightllm_struct.grammar.batch_fill import BatchMaskFiller
from tests.grammar.small_vocab import EOS_ID, small_tokenizer

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "age": {"type": "integer"},
                                      "tags": {"type": "array", "items": {"enum": ["red", "green", "blue"]}}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "array", "items": {"type": "number"}, "maxItems": 4},
    {"type": "object", "properties": {"id": {"type": "string", "pattern": "^[a-c]{2,5}$"},
                                      "ok": {"type": "boolean"}}, "additionalProperties": False},
]


@pytest.fixture(scope="module")
def grammars():
    compiler = GrammarCompiler(small_tokenizer())
    return [compiler.compile_json_schema(s) for s in SCHEMAS]


def _reference(matchers, budgets, vocab_size) -> torch.Tensor:
    mask = allocate_token_bitmask(len(matchers), vocab_size)  # free rows stay all ones
    for i, (matcher, budget) in enumerate(zip(matchers, budgets)):
        if matcher is not None:
            matcher.fill_next_token_bitmask(mask, index=i, max_tokens_left=budget)
    return mask


def _step(matcher: Matcher, row: np.ndarray, rng: random.Random) -> None:
    """Accept a random allowed token of ``row`` (EOS taken now and then); start over once finished."""
    if matcher.is_terminated() or matcher.num_accepted_tokens > 40:
        matcher.reset()
        return
    bits = np.unpackbits(row.view(np.uint8), bitorder="little")[:matcher.grammar.tokenizer.vocab_size]
    allowed = np.flatnonzero(bits).tolist()
    assert allowed, "empty mask row"
    text = [t for t in allowed if t != EOS_ID]
    token = EOS_ID if not text or (EOS_ID in allowed and rng.random() < 0.3) else rng.choice(text)
    assert matcher.accept_token(token)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_fill_equals_per_request_fills(grammars, seed):
    rng = random.Random(seed)
    tok = grammars[0].tokenizer
    # 24 requests of the first schema (one schema served to many clients), 8 of the others, 4 free rows.
    matchers = [Matcher(grammars[0]) for _ in range(24)] + [Matcher(rng.choice(grammars[1:])) for _ in range(8)]
    rows: list[Matcher | None] = matchers + [None] * 4
    filler = BatchMaskFiller((tok.vocab_size + 31) // 32)
    shared_steps = 0
    for step in range(30):
        rng.shuffle(rows)  # rows change owners: a row's held words must not be trusted blindly
        n = rng.randint(len(rows) - 6, len(rows))  # the batch shrinks and grows
        batch = rows[:n]
        budgets = [None if m is None or rng.random() < 0.7 else rng.randint(1, 30) for m in batch]
        got = filler.fill(batch, budgets)
        want = _reference(batch, budgets, tok.vocab_size)
        assert not got.failed
        assert torch.equal(got.rows, want), f"step {step}: batch rows differ from per-request fills"
        keys = {(m.mask_state(), b) for m, b in zip(batch, budgets) if m is not None}
        shared_steps += len(keys) < sum(m is not None for m in batch)
        for i, matcher in enumerate(batch):
            if matcher is not None:
                _step(matcher, want[i].numpy(), rng)
    assert shared_steps > 0  # some steps had rows in one state: the sharing was exercised


class _Foreign:
    """A matcher of another grammar engine: only the MatcherLike fill."""

    def __init__(self, token: int) -> None:
        self.token = token

    def fill_next_token_bitmask(self, bitmask, index=0, *, max_tokens_left=None):
        bitmask[index] = 0
        bitmask[index, self.token // 32] = 1 << (self.token % 32)


class _Broken(Matcher):
    def next_token_words(self, *, max_tokens_left=None):
        raise RuntimeError("grammar failed")


def test_foreign_and_failing_rows(grammars):
    tok = grammars[0].tokenizer
    filler = BatchMaskFiller((tok.vocab_size + 31) // 32)
    good = Matcher(grammars[1])
    batch = [good, _Foreign(37), _Broken(grammars[0]), None]
    got = filler.fill(batch)
    assert [i for i, _ in got.failed] == [2] and isinstance(got.failed[0][1], RuntimeError)
    assert (got.rows[2] == -1).all() and (got.rows[3] == -1).all()  # a failed row allows every token
    assert got.rows[1].nonzero().flatten().tolist() == [1] and got.rows[1, 1].item() == 1 << 5
    assert torch.equal(got.rows[0], _reference([good], [None], tok.vocab_size)[0])
    # the row the foreign matcher wrote is rewritten when a grammar matcher takes it over
    again = filler.fill([good, good])
    assert torch.equal(again.rows[1], again.rows[0])


def test_slow_masks_are_reported(grammars):
    tok = grammars[0].tokenizer
    filler = BatchMaskFiller((tok.vocab_size + 31) // 32)
    got = filler.fill([Matcher(grammars[2]), Matcher(grammars[2]), None], slow_s=0.0)
    assert [i for i, _ in got.slow] == [0]  # the second row shared the first one's mask
