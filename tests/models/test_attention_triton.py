from __future__ import annotations

import pytest
import torch

from lightllm_struct.models.attention_triton import TritonAttentionBackend
from lightllm_struct.models.attention import AttentionMetadata, TorchAttentionBackend, create_attention_backend
from tests.kernels.conftest import rel_err


class _Pool:
    def __init__(self, k_buf, v_buf):
        self.k_buffers, self.v_buffers = [k_buf], [v_buf]


def _step(mode, seq_lens, query_lens, *, hq, hkv, d, seed):
    g = torch.Generator().manual_seed(seed)
    num_slots = sum(seq_lens) + 9
    table = torch.zeros(len(seq_lens), max(seq_lens) + 3, dtype=torch.int32)
    perm, used = torch.randperm(num_slots, generator=g), 0
    for i, n in enumerate(seq_lens):
        table[i, :n] = perm[used:used + n].int()
        used += n
    meta = AttentionMetadata.build(seq_lens, query_lens, table.to(mode.device), device=mode.device)
    t = sum(query_lens)
    q, k, v = (torch.randn(t, h, d, generator=g).to(mode.device, mode.dtype) for h in (hq, hkv, hkv))
    pool = torch.randn(2, num_slots, hkv, d, generator=g).to(mode.device, mode.dtype)
    return q, k, v, meta, pool


@pytest.mark.parametrize("query_lens", [[1, 1, 1], [3, 1, 6]], ids=["decode", "mixed"])
def test_triton_backend_matches_torch_backend(mode, query_lens):
    seq_lens = [s * (40 if mode.gpu else 1) for s in (9, 20, 33)]
    q, k, v, meta, pool = _step(mode, seq_lens, query_lens, hq=8, hkv=2, d=64 if mode.gpu else 16, seed=1)
    triton_pool, torch_pool = _Pool(pool[0].clone(), pool[1].clone()), _Pool(pool[0].clone(), pool[1].clone())
    out = TritonAttentionBackend().forward(q, k, v, layer=0, kv_cache=triton_pool, meta=meta)
    ref = TorchAttentionBackend().forward(q.float(), k.float(), v.float(), layer=0,
                                          kv_cache=_Pool(torch_pool.k_buffers[0].float(),
                                                         torch_pool.v_buffers[0].float()), meta=meta)
    assert torch.equal(triton_pool.k_buffers[0][meta.slot_mapping], k)
    assert torch.equal(triton_pool.v_buffers[0][meta.slot_mapping], v)
    assert rel_err(out, ref) < mode.rel_tol()


@pytest.mark.gpu
def test_auto_backend_on_cuda_is_triton():
    assert isinstance(create_attention_backend("auto", device="cuda"), TritonAttentionBackend)
