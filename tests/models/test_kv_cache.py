from __future__ import annotations

import torch

from lightllm_struct.models.kv_cache import KVCache


def test_kv_cache_buffers_have_one_slot_per_token():
    cache = KVCache(num_layers=3, num_slots=16, num_kv_heads=2, head_dim=4)
    assert len(cache.k_buffers) == len(cache.v_buffers) == 3
    assert cache.k_buffers[0].shape == (16, 2, 4)
    assert KVCache.bytes_per_slot(num_layers=3, num_kv_heads=2, head_dim=4, dtype=torch.float32) == 2 * 3 * 2 * 4 * 4
