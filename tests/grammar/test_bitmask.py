"""Packed bitmask layout: bit j of word i is token 32*i+j (xgrammar/llguidance/outlines layout)."""
from __future__ import annotations

import numpy as np
import torch

from lightllm_struct.grammar import allocate_token_bitmask, apply_token_bitmask_inplace
from lightllm_struct.grammar.bitmask import pack_token_ids, unpack_bitmask


def test_allocate_is_all_allowed():
    mask = allocate_token_bitmask(3, 65)
    assert mask.shape == (3, 3) and mask.dtype == torch.int32 and (mask == -1).all()


def test_pack_layout_matches_bit_arithmetic():
    ids = np.array([0, 5, 31, 32, 63, 64, 100])
    words = pack_token_ids(ids, 4)
    for tid in range(128):
        assert bool((int(words[tid // 32]) >> (tid % 32)) & 1) == (tid in ids)
    assert unpack_bitmask(words, 101).nonzero()[0].tolist() == ids.tolist()


def test_apply_sets_disallowed_to_minus_inf():
    logits = torch.zeros(2, 70)
    mask = allocate_token_bitmask(2, 70)
    mask[1] = torch.from_numpy(pack_token_ids(np.array([3, 40, 69]), 3))
    apply_token_bitmask_inplace(logits, mask)
    assert torch.isfinite(logits[0]).all()
    assert torch.isfinite(logits[1]).nonzero().flatten().tolist() == [3, 40, 69]
