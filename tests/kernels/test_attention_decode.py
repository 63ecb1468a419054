from __future__ import annotations

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.attention_decode import decode_attention, decode_attention_reference
from tests.kernels.conftest import rel_err


def make_cache(mode, seq_lens, n_kv, head_dim, *, seed):
    """A KV pool whose slots are handed out in random order, and each sequence's slot table."""
    g = torch.Generator().manual_seed(seed)
    num_slots = sum(seq_lens) + 7
    k_buf = torch.randn(num_slots, n_kv, head_dim, generator=g).to(mode.device, mode.dtype)
    v_buf = torch.randn(num_slots, n_kv, head_dim, generator=g).to(mode.device, mode.dtype)
    perm = torch.randperm(num_slots, generator=g)
    width = max(seq_lens) + 5
    # Entries past a sequence's length point at other live slots: a kernel reading them would be caught.
    r2t = torch.randint(0, num_slots, (len(seq_lens), width), generator=g, dtype=torch.int32)
    used = 0
    for b, n in enumerate(seq_lens):
        r2t[b, :n] = perm[used:used + n].int()
        used += n
    return k_buf, v_buf, r2t.to(mode.device), torch.tensor(seq_lens, dtype=torch.int32, device=mode.device)


@pytest.mark.parametrize("num_splits", [1, 3, None])
def test_decode_matches_reference(mode, num_splits):
    if mode.gpu:
        seq_lens, hq, hkv, d = [1, 17, 4096, 700, 2500, 63, 1024, 3000], 32, 8, 128
    else:
        seq_lens, hq, hkv, d = [1, 9, 40, 70], 4, 2, 16
    k_buf, v_buf, r2t, lens = make_cache(mode, seq_lens, hkv, d, seed=len(seq_lens))
    q = torch.randn(len(seq_lens), hq, d, generator=torch.Generator().manual_seed(5)).to(mode.device, mode.dtype)
    kw = {} if mode.gpu else {"block_n": 16}
    out = decode_attention(q, k_buf, v_buf, r2t, lens, scale=d ** -0.5, num_splits=num_splits,
                           max_seq_len=max(seq_lens), **kw)
    ref = decode_attention_reference(q, k_buf, v_buf, r2t, lens, scale=d ** -0.5)
    assert out.shape == q.shape and out.dtype == q.dtype
    assert rel_err(out, ref) < mode.rel_tol()


def test_decode_odd_head_dim_and_empty_row(mode):
    seq_lens, hq, hkv, d = ([0, 300, 5], 12, 4, 80) if mode.gpu else ([0, 20, 5], 3, 1, 24)
    k_buf, v_buf, r2t, lens = make_cache(mode, seq_lens, hkv, d, seed=11)
    q = torch.randn(len(seq_lens), hq, d, generator=torch.Generator().manual_seed(6)).to(mode.device, mode.dtype)
    out = decode_attention(q, k_buf, v_buf, r2t, lens, scale=0.1, num_splits=2, block_n=16)
    ref = decode_attention_reference(q, k_buf, v_buf, r2t, lens, scale=0.1)
    assert torch.equal(out[0].float().cpu(), torch.zeros(hq, d))  # no context: zeros, not NaN
    assert rel_err(out[1:], ref[1:]) < mode.rel_tol()


def test_decode_rejects_bad_heads():
    q = torch.randn(2, 3, 16)
    kv = torch.randn(10, 2, 16)
    with pytest.raises(KernelArgumentError, match="multiple"):
        decode_attention(q, kv, kv, torch.zeros(2, 4, dtype=torch.int32), torch.ones(2, dtype=torch.int32),
                         scale=1.0)


def test_decode_rows_sharing_a_slot_table_row(mode):
    """A multi-token decode: 3 query rows per sequence read one table row, each up to its own length."""
    seq_lens, hq, hkv, d = ([50, 700], 8, 2, 64) if mode.gpu else ([9, 30], 4, 2, 16)
    k_buf, v_buf, r2t, lens = make_cache(mode, seq_lens, hkv, d, seed=3)
    row_lens = torch.tensor([max(0, n - 2 + j) if j else 0 for n in seq_lens for j in range(3)],
                            dtype=torch.int32, device=mode.device)
    q = torch.randn(6, hq, d, generator=torch.Generator().manual_seed(7)).to(mode.device, mode.dtype)
    kw = {} if mode.gpu else {"block_n": 16}
    out = decode_attention(q, k_buf, v_buf, r2t, row_lens, scale=d ** -0.5, num_splits=2, rows_per_seq=3, **kw)
    ref = decode_attention_reference(q, k_buf, v_buf, r2t.repeat_interleave(3, dim=0), row_lens, scale=d ** -0.5)
    assert torch.equal(out[0].float().cpu(), torch.zeros(hq, d))  # a dummy row (length 0): zeros
    assert rel_err(out, ref) < mode.rel_tol()
