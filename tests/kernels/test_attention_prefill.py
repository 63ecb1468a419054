from __future__ import annotations

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.attention_prefill import (
    prefill_attention, prefill_attention_reference, store_kv,
)
from tests.kernels.attention_helpers import extend_batch
from tests.kernels.conftest import rel_err


def test_store_kv_writes_exactly_the_given_slots(mode):
    tokens, hkv, d, slots = (1000, 8, 128, 5000) if mode.gpu else (6, 2, 8, 20)
    g = torch.Generator().manual_seed(0)
    k = torch.randn(tokens, hkv, d, generator=g).to(mode.device, mode.dtype)
    v = torch.randn(tokens, hkv, d, generator=g).to(mode.device, mode.dtype)
    k_buf = torch.full((slots, hkv, d), -7.0, device=mode.device, dtype=mode.dtype)
    v_buf = k_buf.clone()
    slot_mapping = torch.randperm(slots, generator=g)[:tokens].to(mode.device)
    store_kv(k, v, k_buf, v_buf, slot_mapping)
    assert torch.equal(k_buf[slot_mapping], k) and torch.equal(v_buf[slot_mapping], v)
    untouched = torch.ones(slots, dtype=torch.bool, device=mode.device)
    untouched[slot_mapping] = False
    assert bool((k_buf[untouched] == -7.0).all()) and bool((v_buf[untouched] == -7.0).all())


@pytest.mark.parametrize("gqa", [1, 4])
def test_extend_with_cached_prefix_matches_reference(mode, gqa):
    if mode.gpu:
        prefix, q_lens, hkv, d, blocks = [0, 500, 1, 3000], [1024, 37, 2048, 513], 8, 128, {}
    else:
        prefix, q_lens, hkv, d, blocks = [0, 5, 17], [7, 1, 20], 2, 16, {"block_m": 16, "block_n": 16}
    batch = extend_batch(mode, prefix, q_lens, hq=hkv * gqa, hkv=hkv, head_dim=d, seed=gqa)
    store_kv(batch.k, batch.v, batch.k_buf, batch.v_buf, batch.slot_mapping)
    out = prefill_attention(batch.q, batch.k_buf, batch.v_buf, batch.r2t, batch.seq_lens, batch.qsl,
                            max_query_len=max(q_lens), scale=d ** -0.5, **blocks)
    ref = prefill_attention_reference(batch.q, batch.k_buf, batch.v_buf, batch.r2t, batch.seq_lens, batch.qsl,
                                      scale=d ** -0.5)
    assert out.shape == batch.q.shape
    assert rel_err(out, ref) < mode.rel_tol()


def test_prefill_rejects_mismatched_head_dim():
    q = torch.randn(4, 2, 16)
    kv = torch.randn(10, 2, 8)
    idx = torch.zeros(1, 4, dtype=torch.int32)
    with pytest.raises(KernelArgumentError, match="head_dim"):
        prefill_attention(q, kv, kv, idx, torch.tensor([4], dtype=torch.int32),
                          torch.tensor([0, 4], dtype=torch.int32), max_query_len=4, scale=1.0)
