"""Rotary position embedding (half-split / GPT-NeoX layout) with Llama 3 frequency scaling.

The kernel rotates ``q`` and ``k`` of one token per program by per-token ``cos``/``sin`` rows that the caller
gathered from the model's table (``models.layers.RotaryEmbedding``), so scaling variants only change the table.
"""
from __future__ import annotations


import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import FLOAT_DTYPES, check, check_tensor, next_pow2


@triton.jit
def _rope_kernel(q_ptr, k_ptr, cos_ptr, sin_ptr, qo_ptr, ko_ptr, n_q_heads, n_k_heads, half,
                 stride_qt, stride_qh, stride_kt, stride_kh, stride_cos, stride_sin,
                 stride_qot, stride_qoh, stride_kot, stride_koh,
                 BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr, BLOCK_D: tl.constexpr):
    tok = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    d_mask = d < half
    cos = tl.load(cos_ptr + tok * stride_cos + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
    sin = tl.load(sin_ptr + tok * stride_sin + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]

    hq = tl.arange(0, BLOCK_HQ)
    mq = (hq < n_q_heads)[:, None] & d_mask[None, :]
    src = q_ptr + tok * stride_qt + hq[:, None] * stride_qh + d[None, :]
    x1 = tl.load(src, mask=mq, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mq, other=0.0).to(tl.float32)
    dst = qo_ptr + tok * stride_qot + hq[:, None] * stride_qoh + d[None, :]
    tl.store(dst, (x1 * cos - x2 * sin).to(qo_ptr.dtype.element_ty), mask=mq)
    tl.store(dst + half, (x2 * cos + x1 * sin).to(qo_ptr.dtype.element_ty), mask=mq)

    hk = tl.arange(0, BLOCK_HK)
    mk = (hk < n_k_heads)[:, None] & d_mask[None, :]
    src = k_ptr + tok * stride_kt + hk[:, None] * stride_kh + d[None, :]
    x1 = tl.load(src, mask=mk, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mk, other=0.0).to(tl.float32)
    dst = ko_ptr + tok * stride_kot + hk[:, None] * stride_koh + d[None, :]
    tl.store(dst, (x1 * cos - x2 * sin).to(ko_ptr.dtype.element_ty), mask=mk)
    tl.store(dst + half, (x2 * cos + x1 * sin).to(ko_ptr.dtype.element_ty), mask=mk)


def _check_args(q, k, cos, sin) -> None:
    check_tensor("q", q, ndim=3, dtypes=FLOAT_DTYPES)
    check_tensor("k", k, ndim=3, dtypes=(q.dtype,), device=q.device)
    check(q.shape[0] == k.shape[0] and q.shape[2] == k.shape[2],
          f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on tokens or head_dim")
    check(q.shape[2] % 2 == 0, f"head_dim must be even, got {q.shape[2]}")
    for name, t in (("cos", cos), ("sin", sin)):
        check_tensor(name, t, ndim=2, dtypes=FLOAT_DTYPES, device=q.device)
        check(tuple(t.shape) == (q.shape[0], q.shape[2] // 2),
              f"{name} must be [T, head_dim/2] = {(q.shape[0], q.shape[2] // 2)}, got {tuple(t.shape)}")


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q [T, Hq, D]`` and ``k [T, Hkv, D]`` by per-token ``cos``/``sin`` ``[T, D/2]``.

    Returns new contiguous tensors (the inputs may be strided views of a fused QKV projection).

    Raises
    ------
    KernelArgumentError
        On mismatched shapes, dtypes or devices.
    """
    _check_args(q, k, cos, sin)
    q_out, k_out = torch.empty_like(q, memory_format=torch.contiguous_format), \
        torch.empty_like(k, memory_format=torch.contiguous_format)
    n_tok, half = q.shape[0], q.shape[2] // 2
    if n_tok > 0:
        _rope_kernel[(n_tok,)](
            q, k, cos, sin, q_out, k_out, q.shape[1], k.shape[1], half,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0), sin.stride(0),
            q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1),
            BLOCK_HQ=next_pow2(q.shape[1]), BLOCK_HK=next_pow2(k.shape[1]), BLOCK_D=next_pow2(half),
            num_warps=4)
    return q_out, k_out
