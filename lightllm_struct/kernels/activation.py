"""SiLU-and-mul (SwiGLU): ``silu(gate) * up`` for ``x = [gate | up]`` on the last dim, computed in fp32."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import FLOAT_DTYPES, check, check_tensor, next_pow2


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, n_inner, stride_x, stride_out, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_inner
    gate = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x + n_inner + cols, mask=mask, other=0.0).to(tl.float32)
    out = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + row * stride_out + cols, out.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``silu(x[:, :I]) * x[:, I:]`` for ``x [N, 2I]``; returns ``[N, I]`` in ``x``'s dtype.

    Raises
    ------
    KernelArgumentError
        On a wrong rank, dtype, odd width or non-unit last stride.
    """
    check_tensor("x", x, ndim=2, dtypes=FLOAT_DTYPES)
    check(x.shape[1] % 2 == 0, f"x's last dim must be even (gate|up), got {x.shape[1]}")
    n_rows, n_inner = x.shape[0], x.shape[1] // 2
    out = torch.empty((n_rows, n_inner), dtype=x.dtype, device=x.device)
    if n_rows > 0:
        block = min(1024, next_pow2(n_inner))
        grid = (n_rows, triton.cdiv(n_inner, block))
        _silu_and_mul_kernel[grid](x, out, n_inner, x.stride(0), out.stride(0), BLOCK=block,
                                   num_warps=4)
    return out
