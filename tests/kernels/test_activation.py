from __future__ import annotations

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.activation import silu_and_mul
from lightllm_struct.kernels.reference import silu_and_mul as silu_and_mul_reference
from tests.kernels.conftest import rel_err


def test_silu_and_mul_matches_reference(mode):
    rows, inner = (256, 14336) if mode.gpu else (4, 40)
    x = (3 * torch.randn(rows, 2 * inner, generator=torch.Generator().manual_seed(0))).to(mode.device, mode.dtype)
    out = silu_and_mul(x)
    assert out.shape == (rows, inner) and out.dtype == x.dtype
    assert rel_err(out, silu_and_mul_reference(x)) < mode.rel_tol()


def test_silu_and_mul_rejects_odd_width():
    with pytest.raises(KernelArgumentError, match="even"):
        silu_and_mul(torch.randn(2, 5))
