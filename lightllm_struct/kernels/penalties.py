"""Repetition, frequency and presence penalties and logit biases, applied in place as one sparse scatter.

A dense ``[B, V]`` count tensor would cost ``B * V`` memory and traffic every step for what is, per row, a few
hundred distinct tokens; so each row brings only its own entries ``(row, token, count, seen, bias)``: ``count``
the token's occurrences in the output so far, ``seen`` whether it occurs in the prompt or the output (the
repetition penalty's set), ``bias`` its logit bias. Entries are unique per (row, token), so the programs never
write the same logit. With per-row penalties ``rep``, ``freq`` and ``pres`` (vLLM's and OpenAI's definitions)::

    z = z / rep if z > 0 else z * rep        where seen
    z = z - freq * count - pres * (count > 0) + bias

This runs before the sampling kernel (kernels/sampling.py), whose grammar mask then removes what the grammar
forbids whatever the bias said. The torch reference and ``SparsePenalties`` are in ``kernels/reference.py``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lightllm_struct.kernels._common import check, check_tensor
from lightllm_struct.kernels.reference import SparsePenalties


@triton.jit
def _penalty_kernel(logits_ptr, index_ptr, values_ptr, params_ptr, n_entries, batch, stride_l,
                    BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < n_entries
    row = tl.load(index_ptr + i, mask=ok, other=0).to(tl.int64)
    token = tl.load(index_ptr + n_entries + i, mask=ok, other=0).to(tl.int64)
    count = tl.load(values_ptr + i, mask=ok, other=0.0)
    seen = tl.load(values_ptr + n_entries + i, mask=ok, other=0.0)
    bias = tl.load(values_ptr + 2 * n_entries + i, mask=ok, other=0.0)
    rep = tl.load(params_ptr + row, mask=ok, other=1.0)
    freq = tl.load(params_ptr + batch + row, mask=ok, other=0.0)
    pres = tl.load(params_ptr + 2 * batch + row, mask=ok, other=0.0)
    ptr = logits_ptr + row * stride_l + token
    z = tl.load(ptr, mask=ok, other=0.0).to(tl.float32)
    z = tl.where(seen > 0, tl.where(z > 0, z / rep, z * rep), z)
    z = z - freq * count - tl.where(count > 0, pres, 0.0) + bias
    tl.store(ptr, z.to(logits_ptr.dtype.element_ty), mask=ok)


def _check(logits: torch.Tensor, pen: SparsePenalties) -> None:
    check_tensor("logits", logits, ndim=2, dtypes=(torch.float32, torch.float16, torch.bfloat16))
    check_tensor("index", pen.index, ndim=2, dtypes=(torch.int32,), device=logits.device)
    check_tensor("values", pen.values, ndim=2, dtypes=(torch.float32,), device=logits.device)
    check_tensor("row_params", pen.row_params, ndim=2, dtypes=(torch.float32,), device=logits.device)
    check(pen.row_params.shape == (3, logits.shape[0]),
          f"row_params is {tuple(pen.row_params.shape)} for a batch of {logits.shape[0]}")
    check(pen.values.shape == (3, pen.num_entries), "values must be [3, N] beside an index of [2, N]")
    check(logits.stride(1) == 1, "logits rows must be contiguous")


def apply_penalties(logits: torch.Tensor, pen: SparsePenalties, *, block: int = 256) -> torch.Tensor:
    """Apply ``pen`` to ``logits [B, V]`` in place (one launch); returns ``logits``.

    Raises
    ------
    KernelArgumentError
        On wrong shapes, dtypes or devices.
    """
    _check(logits, pen)
    n = pen.num_entries
    if n:
        _penalty_kernel[(triton.cdiv(n, block),)](logits, pen.index.contiguous(), pen.values.contiguous(),
                                                   pen.row_params.contiguous(), n, logits.shape[0],
                                                   logits.stride(0), BLOCK=block)
    return logits
