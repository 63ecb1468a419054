"""Fused RMSNorm with an optional residual add, one program per row.

Matches transformers' ``LlamaRMSNorm``: statistics in fp32, the normalised row rounded to the input dtype
before the weight multiplies it; with a residual the sum is rounded to the input dtype first (the value the
next layer's residual stream holds), so the kernel normalises exactly what the torch path normalises.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import FLOAT_DTYPES, check, check_tensor, next_pow2


@triton.jit
def _rms_norm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr, n_cols, eps,
                     stride_x, stride_res, stride_out, stride_res_out,
                     HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        r = tl.load(res_ptr + row * stride_res + cols, mask=mask, other=0.0).to(tl.float32)
        # Round the sum to the storage dtype first: the residual stream is kept in that dtype.
        summed = (x + r).to(res_out_ptr.dtype.element_ty)
        tl.store(res_out_ptr + row * stride_res_out + cols, summed, mask=mask)
        x = summed.to(tl.float32)
    var = tl.sum(x * x, axis=0) / n_cols
    normed = (x * (1.0 / tl.sqrt(var + eps))).to(out_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * stride_out + cols, (normed * w).to(out_ptr.dtype.element_ty), mask=mask)


def _check_args(x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor | None) -> None:
    check_tensor("x", x, ndim=2, dtypes=FLOAT_DTYPES)
    check_tensor("weight", weight, ndim=1, dtypes=FLOAT_DTYPES, device=x.device)
    check(weight.shape[0] == x.shape[1], f"weight has {weight.shape[0]} elements, x row width {x.shape[1]}")
    if residual is not None:
        check_tensor("residual", residual, ndim=2, dtypes=(x.dtype,), device=x.device)
        check(residual.shape == x.shape, f"residual shape {tuple(residual.shape)} != x {tuple(x.shape)}")


def _launch(x, weight, eps, residual):
    _check_args(x, weight, residual)
    n_rows, n_cols = x.shape
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    res_out = torch.empty_like(out) if residual is not None else out
    res = residual if residual is not None else x
    if n_rows > 0:
        block = next_pow2(n_cols)
        _rms_norm_kernel[(n_rows,)](
            x, res, weight, out, res_out, n_cols, float(eps),
            x.stride(0), res.stride(0), out.stride(0), res_out.stride(0),
            HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=min(16, max(1, block // 512)))
    return out, res_out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm of each row of ``x [N, H]`` scaled by ``weight [H]``.

    Raises
    ------
    KernelArgumentError
        On a wrong rank, dtype, device or last-dim stride.
    """
    return _launch(x, weight, eps, None)[0]


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then RMSNorm in one pass: returns ``(rms_norm(x + residual), x + residual)``."""
    return _launch(x, weight, eps, residual)
