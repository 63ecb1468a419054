"""The torch attention backend against a per-query softmax written out by hand (GQA, chunks with context, windows)."""
from __future__ import annotations

import math

import pytest
import torch

from lightllm_struct.models.attention import AttentionMetadata, TorchAttentionBackend


class _Pool:
    def __init__(self, k_buf, v_buf):
        self.k_buffers, self.v_buffers = [k_buf], [v_buf]


def _naive(q, k_buf, v_buf, table, seq_lens, query_lens, *, window=None):
    """Each query row: softmax(q . k / sqrt(d)) over the keys at or before its position (and inside the window)."""
    hq, hkv = q.shape[1], k_buf.shape[1]
    out, row = torch.zeros_like(q), 0
    for i, (seq_len, q_len) in enumerate(zip(seq_lens, query_lens)):
        for j in range(q_len):
            pos = seq_len - q_len + j
            first = 0 if window is None else max(0, pos - window + 1)
            slots = table[i, first:pos + 1].long()
            for h in range(hq):
                keys, values = k_buf[slots, h // (hq // hkv)], v_buf[slots, h // (hq // hkv)]
                weights = torch.softmax(keys @ q[row, h] / math.sqrt(q.shape[-1]), dim=0)
                out[row, h] = weights @ values
            row += 1
    return out


@pytest.mark.parametrize("seq_lens,query_lens,window", [
    ([37], [37], None),  # a whole prompt
    ([90], [24], None),  # a chunk after 66 computed positions
    ([90, 12, 41], [24, 1, 41], None),  # a chunk, one decode, a whole prompt in one step
    ([30, 50, 9], [1, 1, 1], None),  # decodes only
    ([60, 20], [15, 1], 8),  # sliding window
    ([5, 300, 7, 140, 290, 700], [1] * 6, None),  # decodes of spread contexts: batched in groups by length
    ([5, 300, 90, 700, 6], [1, 1, 20, 1, 1], None),  # the same beside a chunk
    ([3, 400, 9, 350], [1] * 4, 16),  # groups under a sliding window
], ids=["prompt", "chunk", "mixed", "decode", "window", "spread-decode", "spread-mixed", "spread-window"])
def test_torch_backend_matches_the_written_out_softmax(seq_lens, query_lens, window):
    g = torch.Generator().manual_seed(3)
    hq, hkv, d = 6, 2, 16
    num_slots = sum(seq_lens) + 5
    perm = torch.randperm(num_slots, generator=g)
    table = torch.zeros(len(seq_lens), max(seq_lens) + 2, dtype=torch.int32)
    used = 0
    for i, n in enumerate(seq_lens):
        table[i, :n] = perm[used:used + n].int()
        used += n
    meta = AttentionMetadata.build(seq_lens, query_lens, table)
    t = sum(query_lens)
    q, k, v = (torch.randn(t, h, d, generator=g, dtype=torch.float64) for h in (hq, hkv, hkv))
    k_buf, v_buf = (torch.randn(num_slots, hkv, d, generator=g, dtype=torch.float64) for _ in range(2))
    out = TorchAttentionBackend(sliding_window=window).forward(q, k, v, layer=0, kv_cache=_Pool(k_buf, v_buf),
                                                               meta=meta)
    assert torch.equal(k_buf[meta.slot_mapping], k) and torch.equal(v_buf[meta.slot_mapping], v)
    ref = _naive(q, k_buf, v_buf, table, seq_lens, query_lens, window=window)
    assert torch.allclose(out, ref, atol=1e-10, rtol=1e-8)


def test_decodes_of_spread_contexts_are_padded_only_within_their_length_group(monkeypatch):
    lens = [5, 300, 7, 140, 290, 700, 120]
    table = torch.arange(len(lens) * 702, dtype=torch.int32).reshape(len(lens), 702)
    meta = AttentionMetadata.build(lens, [1] * len(lens), table)
    backend, padded = TorchAttentionBackend(), []
    real = backend._decode
    monkeypatch.setattr(backend, "_decode", lambda q, *a: padded.append((q.shape[0], a[-1])) or real(q, *a))
    q, k, v = (torch.randn(len(lens), h, 8) for h in (4, 2, 2))
    pool = _Pool(torch.randn(table.numel(), 2, 8), torch.randn(table.numel(), 2, 8))
    backend.forward(q, k, v, layer=0, kv_cache=pool, meta=meta)
    # 5, 7, 120 (all short) | 140 | 290, 300 | 700: no row padded beyond twice its length or the short context.
    assert sorted(padded) == [(1, 140), (1, 700), (2, 300), (3, 120)]
