"""Prefill / extend attention over the token-level KV cache, every sequence of the batch in one launch.

The new tokens of sequence ``b`` are ``q[query_start_loc[b]:query_start_loc[b+1]]``; they sit at context
positions ``seq_lens[b] - query_len .. seq_lens[b] - 1``, after a cached prefix. :func:`store_kv` first
writes the new K/V into their slots; the attention kernel then reads the whole context (prefix and new
tokens alike) through ``req_to_token``, so a prefix-cache hit and a fresh prompt take the same path.
One program handles a block of ``BLOCK_M`` queries of one head of one sequence (flash-attention 2 loop).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import (
    FLOAT_DTYPES, INDEX_DTYPES, check, check_tensor, dot_precision, next_pow2,
)

_LOG2E = 1.4426950408889634


@triton.jit
def _store_kv_kernel(k_ptr, v_ptr, kb_ptr, vb_ptr, slot_ptr, n_heads, head_dim,
                     stride_kt, stride_kh, stride_vt, stride_vh, stride_kbs, stride_kbh, stride_vbs, stride_vbh,
                     BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_D)
    mask = (h < n_heads)[:, None] & (d < head_dim)[None, :]
    k = tl.load(k_ptr + t * stride_kt + h[:, None] * stride_kh + d[None, :], mask=mask)
    tl.store(kb_ptr + slot * stride_kbs + h[:, None] * stride_kbh + d[None, :], k, mask=mask)
    v = tl.load(v_ptr + t * stride_vt + h[:, None] * stride_vh + d[None, :], mask=mask)
    tl.store(vb_ptr + slot * stride_vbs + h[:, None] * stride_vbh + d[None, :], v, mask=mask)


def store_kv(k: torch.Tensor, v: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """Write ``k``/``v [T, Hkv, D]`` into ``k_buffer``/``v_buffer [num_slots, Hkv, D]`` at ``slot_mapping``.

    Raises
    ------
    KernelArgumentError
        On mismatched shapes, dtypes or devices.
    """
    check_tensor("k", k, ndim=3, dtypes=FLOAT_DTYPES)
    check_tensor("v", v, ndim=3, dtypes=(k.dtype,), device=k.device)
    check(k.shape == v.shape, f"k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    for name, t in (("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        check_tensor(name, t, ndim=3, dtypes=(k.dtype,), device=k.device)
        check(t.shape[1:] == k.shape[1:], f"{name} rows {tuple(t.shape[1:])} != k rows {tuple(k.shape[1:])}")
    check_tensor("slot_mapping", slot_mapping, ndim=1, dtypes=INDEX_DTYPES, device=k.device)
    check(slot_mapping.shape[0] == k.shape[0], f"slot_mapping has {slot_mapping.shape[0]} slots for "
          f"{k.shape[0]} tokens")
    if k.shape[0] == 0:
        return
    _store_kv_kernel[(k.shape[0],)](
        k, v, k_buffer, v_buffer, slot_mapping, k.shape[1], k.shape[2],
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0), v_buffer.stride(1),
        BLOCK_H=next_pow2(k.shape[1]), BLOCK_D=next_pow2(k.shape[2]), num_warps=4)


@triton.jit
def _prefill_kernel(q_ptr, k_ptr, v_ptr, o_ptr, r2t_ptr, seq_lens_ptr, qsl_ptr, qk_scale, group, head_dim,
                    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_rb,
                    stride_ot, stride_oh,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                    DOT_PRECISION: tl.constexpr):
    m_blk = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    h = tl.program_id(2)
    kvh = h // group
    q_start = tl.load(qsl_ptr + b).to(tl.int64)
    q_len = (tl.load(qsl_ptr + b + 1) - q_start).to(tl.int32)
    seq_len = tl.load(seq_lens_ptr + b).to(tl.int32)
    prefix = seq_len - q_len

    m = m_blk * BLOCK_M + tl.arange(0, BLOCK_M)
    m_mask = m < q_len
    d = tl.arange(0, BLOCK_D)
    d_mask = d < head_dim
    q = tl.load(q_ptr + (q_start + m)[:, None] * stride_qt + h * stride_qh + d[None, :],
                mask=m_mask[:, None] & d_mask[None, :], other=0.0)
    q_pos = prefix + m
    # Causality bounds the keys this block needs; a block past the sequence's queries loops zero times.
    hi = tl.minimum(seq_len, prefix + (m_blk + 1) * BLOCK_M)
    hi = tl.where(m_blk * BLOCK_M < q_len, hi, 0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    for n0 in range(0, hi, BLOCK_N):
        n = n0 + tl.arange(0, BLOCK_N)
        n_mask = n < hi
        slots = tl.load(r2t_ptr + b * stride_rb + n, mask=n_mask, other=0).to(tl.int64)
        kv_mask = n_mask[:, None] & d_mask[None, :]
        k = tl.load(k_ptr + slots[:, None] * stride_kt + kvh * stride_kh + d[None, :], mask=kv_mask, other=0.0)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION).to(tl.float32) * qk_scale
        valid = n_mask[None, :] & (n[None, :] <= q_pos[:, None])
        qk = tl.where(valid, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, axis=1))
        # Rows with nothing valid yet keep m = -inf; shift by 0 there so exp2 never sees (-inf) - (-inf).
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_shift)
        p = tl.exp2(qk - m_shift[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_ptr + slots[:, None] * stride_vt + kvh * stride_vh + d[None, :], mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION).to(tl.float32)
        m_i = m_new

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    tl.store(o_ptr + (q_start + m)[:, None] * stride_ot + h * stride_oh + d[None, :],
             out.to(o_ptr.dtype.element_ty), mask=m_mask[:, None] & d_mask[None, :])


def prefill_attention(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                      req_to_token: torch.Tensor, seq_lens: torch.Tensor, query_start_loc: torch.Tensor,
                      *, max_query_len: int, scale: float, block_m: int | None = None, block_n: int = 64,
                      num_warps: int = 4, num_stages: int = 3) -> torch.Tensor:
    """Causal attention of the new tokens ``q [T, Hq, D]`` of every sequence over its whole context.

    The new tokens' K/V must already be in ``k_buffer``/``v_buffer`` (see :func:`store_kv`).
    ``query_start_loc [B+1]`` delimits each sequence's tokens in ``q``; ``max_query_len`` is their
    longest run (a host int, so no device sync sizes the grid).

    Raises
    ------
    KernelArgumentError
        On mismatched shapes, dtypes or devices.
    """
    check_tensor("q", q, ndim=3, dtypes=FLOAT_DTYPES)
    for name, t in (("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        check_tensor(name, t, ndim=3, dtypes=(q.dtype,), device=q.device)
        check(t.shape[2] == q.shape[2], f"{name} head_dim {t.shape[2]} != q head_dim {q.shape[2]}")
    check(q.shape[1] % k_buffer.shape[1] == 0, "query heads must be a multiple of KV heads")
    check_tensor("req_to_token", req_to_token, ndim=2, dtypes=INDEX_DTYPES, device=q.device)
    check_tensor("seq_lens", seq_lens, ndim=1, dtypes=INDEX_DTYPES, device=q.device)
    check_tensor("query_start_loc", query_start_loc, ndim=1, dtypes=INDEX_DTYPES, device=q.device)
    batch = query_start_loc.shape[0] - 1
    check(batch >= 0 and seq_lens.shape[0] >= batch and req_to_token.shape[0] >= batch,
          "seq_lens / req_to_token shorter than the batch query_start_loc describes")
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if batch == 0 or q.shape[0] == 0 or max_query_len == 0:
        return out
    n_heads, head_dim = q.shape[1], q.shape[2]
    # Measured on an H100 (benchmarks/kernel_bench.py): 128-query blocks win from a few thousand tokens on.
    block_m = block_m or (128 if max_query_len >= 2048 and q.is_cuda else 64)
    grid = (triton.cdiv(max_query_len, block_m), batch, n_heads)
    _prefill_kernel[grid](
        q, k_buffer, v_buffer, out, req_to_token, seq_lens, query_start_loc,
        scale * _LOG2E, n_heads // k_buffer.shape[1], head_dim,
        q.stride(0), q.stride(1), k_buffer.stride(0), k_buffer.stride(1), v_buffer.stride(0),
        v_buffer.stride(1), req_to_token.stride(0), out.stride(0), out.stride(1),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=max(16, next_pow2(head_dim)),
        DOT_PRECISION=dot_precision(q.dtype), num_warps=num_warps, num_stages=num_stages)
    return out


def prefill_attention_reference(q: torch.Tensor, k_buffer: torch.Tensor, v_buffer: torch.Tensor,
                                req_to_token: torch.Tensor, seq_lens: torch.Tensor,
                                query_start_loc: torch.Tensor, *, scale: float) -> torch.Tensor:
    """Plain torch version of :func:`prefill_attention` (fp32 math, one sequence at a time)."""
    group = q.shape[1] // k_buffer.shape[1]
    out = torch.zeros_like(q)
    qsl = query_start_loc.tolist()
    for b in range(len(qsl) - 1):
        n, q_len = int(seq_lens[b]), qsl[b + 1] - qsl[b]
        if q_len == 0:
            continue
        slots = req_to_token[b, :n].long()
        k = k_buffer[slots].float().repeat_interleave(group, dim=1)
        v = v_buffer[slots].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("mhd,nhd->hmn", q[qsl[b]:qsl[b + 1]].float(), k) * scale
        q_pos = torch.arange(n - q_len, n, device=q.device)[:, None]
        scores = scores.masked_fill(torch.arange(n, device=q.device)[None, :] > q_pos, float("-inf"))
        out[qsl[b]:qsl[b + 1]] = torch.einsum("hmn,nhd->mhd", scores.softmax(-1), v).to(q.dtype)
    return out
