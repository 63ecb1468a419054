"""Decode attention over the token-level KV cache (one query token a sequence), flash-decoding style.

Every sequence's keys and values are gathered slot by slot through its row of ``req_to_token``; there are no
contiguous blocks. Stage one splits each sequence's context into ``num_splits`` chunks and gives every
(sequence, KV head, chunk) its own program, which handles the whole GQA group of query heads sharing that KV
head (so each K/V row is read once per group); it writes a partial output and its log-sum-exp. Stage two
merges the chunks. The chunk length is derived on the device from each sequence's length, so ``num_splits``
is the only host-side choice and a CUDA graph captured with it serves any context length.

With ``rows_per_seq = k`` query row ``b`` reads slot-table row ``b // k``: a multi-token decode runs each of a
sequence's k new tokens as its own row, whose length ends at that token (causality without a mask).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import (
    FLOAT_DTYPES, INDEX_DTYPES, check, check_tensor, dot_precision, next_pow2, num_sms,
)

_LOG2E = 1.4426950408889634


@triton.jit
def _decode_split_kernel(q_ptr, k_ptr, v_ptr, r2t_ptr, seq_lens_ptr, mid_o_ptr, mid_lse_ptr,
                         qk_scale, group, head_dim, num_splits, rows_per_seq,
                         stride_qb, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_rb,
                         stride_mob, stride_moh, stride_mos, stride_mlb, stride_mlh,
                         BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, DOT_PRECISION: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    kvh = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + b).to(tl.int32)
    # Chunk length rounded up to whole blocks, so only the last chunk of a sequence has a ragged end.
    split_len = ((seq_len + num_splits - 1) // num_splits + BLOCK_N - 1) // BLOCK_N * BLOCK_N
    start = split * split_len
    end = tl.minimum(start + split_len, seq_len)

    h = tl.arange(0, BLOCK_H)
    h_mask = h < group
    q_head = kvh * group + h
    d = tl.arange(0, BLOCK_D)
    d_mask = d < head_dim
    q = tl.load(q_ptr + b * stride_qb + q_head[:, None] * stride_qh + d[None, :],
                mask=h_mask[:, None] & d_mask[None, :], other=0.0)

    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    for n0 in range(start, end, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < end
        slots = tl.load(r2t_ptr + (b // rows_per_seq) * stride_rb + n, mask=n_mask, other=0).to(tl.int64)
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_ptr + slots[:, None] * stride_kt + kvh * stride_kh + d[None, :], mask=kv_mask, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION).to(tl.float32) * qk_scale
        qk = tl.where(n_mask[None, :], qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(qk - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + slots[:, None] * stride_vt + kvh * stride_vh + d[None, :], mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION).to(tl.float32)
        m_i = m_new

    # An empty chunk (short sequence) leaves l_i = 0: it stores lse = -inf and a zero output.
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    lse = tl.where(l_i > 0.0, m_i + tl.log2(l_safe), float("-inf"))
    o_ptrs = mid_o_ptr + b * stride_mob + q_head[:, None] * stride_moh + split * stride_mos + d[None, :]
    tl.store(o_ptrs, acc / l_safe[:, None], mask=h_mask[:, None] & d_mask[None, :])
    tl.store(mid_lse_ptr + b * stride_mlb + q_head * stride_mlh + split, lse, mask=h_mask)


@triton.jit
def _decode_combine_kernel(mid_o_ptr, mid_lse_ptr, o_ptr, head_dim, num_splits,
                           stride_mob, stride_moh, stride_mos, stride_mlb, stride_mlh, stride_ob, stride_oh,
                           BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    s_mask = s < num_splits
    d = tl.arange(0, BLOCK_D)
    d_mask = d < head_dim
    lse = tl.load(mid_lse_ptr + b * stride_mlb + h * stride_mlh + s, mask=s_mask, other=float("-inf"))
    m = tl.max(lse, axis=0)
    # A sequence with no context at all (a padded CUDA-graph row) has every lse = -inf: output zeros.
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.exp2(lse - m)
    parts = tl.load(mid_o_ptr + b * stride_mob + h * stride_moh + s[:, None] * stride_mos + d[None, :],
                    mask=s_mask[:, None] & d_mask[None, :], other=0.0)
    denom = tl.sum(w, axis=0)
    out = tl.sum(w[:, None] * parts, axis=0) / tl.where(denom > 0.0, denom, 1.0)
    tl.store(o_ptr + b * stride_ob + h * stride_oh + d, out.to(o_ptr.dtype.element_ty), mask=d_mask)


def default_num_splits(batch: int, num_kv_heads: int, max_seq_len: int, device: torch.device) -> int:
    """Chunks a sequence so that about two programs run per multiprocessor, each over >= 128 tokens."""
    sms = num_sms(torch.device(device))
    by_occupancy = triton.cdiv(2 * sms, max(1, batch * num_kv_heads))
    return max(1, min(64, by_occupancy, triton.cdiv(max(1, max_seq_len), 128)))


def _check_args(q, k_buffer, v_buffer, req_to_token, seq_lens, rows_per_seq: int = 1) -> None:
    check_tensor("q", q, ndim=3, dtypes=FLOAT_DTYPES)
    for name, t in (("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        check_tensor(name, t, ndim=3, dtypes=(q.dtype,), device=q.device)
        check(t.shape[2] == q.shape[2], f"{name} head_dim {t.shape[2]} != q head_dim {q.shape[2]}")
    check(k_buffer.shape == v_buffer.shape, "k_buffer and v_buffer shapes differ")
    check(q.shape[1] % k_buffer.shape[1] == 0,
          f"query heads {q.shape[1]} not a multiple of KV heads {k_buffer.shape[1]}")
    check_tensor("req_to_token", req_to_token, ndim=2, dtypes=INDEX_DTYPES, device=q.device)
    check_tensor("seq_lens", seq_lens, ndim=1, dtypes=INDEX_DTYPES, device=q.device)
    check(rows_per_seq >= 1, f"rows_per_seq must be >= 1, got {rows_per_seq}")
    check(req_to_token.shape[0] * rows_per_seq >= q.shape[0] and seq_lens.shape[0] >= q.shape[0],
          f"req_to_token {tuple(req_to_token.shape)} / seq_lens {tuple(seq_lens.shape)} shorter than batch")


def decode_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                     req_to_token: torch.Tensor, seq_lens: torch.Tensor, *, scale: float,
                     num_splits: int | None = None, max_seq_len: int | None = None, rows_per_seq: int = 1,
                     block_n: int = 64, num_warps: int = 4, num_stages: int = 2) -> torch.Tensor:
    """Attention of one new query token per sequence over its whole cached context.

    Parameters
    ----------
    q:
        ``[B, Hq, D]`` queries (the current token of each sequence).
    k_buffer, v_buffer:
        ``[num_slots, Hkv, D]`` one layer's KV pool; the current token's K/V must already be stored.
    req_to_token:
        ``[>=B / rows_per_seq, L]`` slot of every context position of each sequence (row
        ``b // rows_per_seq`` for ``q[b]``).
    seq_lens:
        ``[>=B]`` context length of each query row including its own token (0 gives a zero output).
    scale:
        Softmax scale, usually ``D ** -0.5``.
    num_splits:
        Chunks per sequence; by default from ``max_seq_len`` and the device size. Fix it for CUDA graphs.
    rows_per_seq:
        Consecutive query rows that share one slot-table row (the tokens of a multi-token decode).

    Raises
    ------
    KernelArgumentError
        On mismatched shapes, dtypes or devices.
    """
    _check_args(q, k_buffer, v_buffer, req_to_token, seq_lens, rows_per_seq)
    batch, n_heads, head_dim = q.shape
    n_kv = k_buffer.shape[1]
    group = n_heads // n_kv
    if num_splits is None:
        num_splits = default_num_splits(batch, n_kv, max_seq_len or req_to_token.shape[1], q.device)
    out = torch.empty((batch, n_heads, head_dim), dtype=q.dtype, device=q.device)
    if batch == 0:
        return out
    mid_o = torch.empty((batch, n_heads, num_splits, head_dim), dtype=torch.float32, device=q.device)
    mid_lse = torch.empty((batch, n_heads, num_splits), dtype=torch.float32, device=q.device)
    block_d = max(16, next_pow2(head_dim))
    _decode_split_kernel[(batch, n_kv, num_splits)](
        q, k_buffer, v_buffer, req_to_token, seq_lens, mid_o, mid_lse,
        scale * _LOG2E, group, head_dim, num_splits, rows_per_seq,
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0),
        v_buffer.stride(1), req_to_token.stride(0),
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2), mid_lse.stride(0), mid_lse.stride(1),
        BLOCK_H=max(16, next_pow2(group)), BLOCK_N=block_n, BLOCK_D=block_d, DOT_PRECISION=dot_precision(q.dtype),
        num_warps=num_warps, num_stages=num_stages)
    _decode_combine_kernel[(batch, n_heads)](
        mid_o, mid_lse, out, head_dim, num_splits,
        mid_o.stride(0), mid_o.stride(1), mid_o.stride(2), mid_lse.stride(0), mid_lse.stride(1),
        out.stride(0), out.stride(1), BLOCK_S=next_pow2(num_splits), BLOCK_D=block_d, num_warps=4)
    return out


def decode_attention_reference(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                               req_to_token: torch.Tensor, seq_lens: torch.Tensor, *,
                               scale: float, rows_per_seq: int = 1) -> torch.Tensor:
    """Plain torch version of :func:`decode_attention` (fp32 math, one sequence at a time)."""
    batch, n_heads, _ = q.shape
    group = n_heads // k_buffer.shape[1]
    out = torch.zeros_like(q)
    for b in range(batch):
        n = int(seq_lens[b])
        if n == 0:
            continue
        slots = req_to_token[b // rows_per_seq, :n].long()
        k = k_buffer[slots].float().repeat_interleave(group, dim=1)  # [n, Hq, D]
        v = v_buffer[slots].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[b].float(), k) * scale
        out[b] = torch.einsum("hn,nhd->hd", scores.softmax(-1), v).to(q.dtype)
    return out
