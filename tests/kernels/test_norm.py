from __future__ import annotations

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels import reference
from lightllm_struct.kernels.norm import add_rms_norm, rms_norm
from tests.kernels.conftest import rel_err


def _inputs(mode, rows, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, hidden, generator=g).to(mode.device, mode.dtype)
    res = torch.randn(rows, hidden, generator=g).to(mode.device, mode.dtype)
    w = (1 + 0.1 * torch.randn(hidden, generator=g)).to(mode.device, mode.dtype)
    return x, res, w


@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_matches_reference(mode, with_residual):
    rows, hidden = (300, 4096) if mode.gpu else (5, 48)  # 48: not a power of two, exercises the mask
    x, res, w = _inputs(mode, rows, hidden, seed=1 + with_residual)
    if with_residual:
        out, summed = add_rms_norm(x, res, w, 1e-5)
        ref, ref_summed = reference.add_rms_norm(x, res, w, 1e-5)
        assert rel_err(summed, ref_summed) < mode.rel_tol()
    else:
        out = rms_norm(x, w, 1e-5)
        ref = reference.rms_norm(x, w, 1e-5)
    assert out.dtype == x.dtype and out.shape == x.shape
    assert rel_err(out, ref) < mode.rel_tol()


def test_rms_norm_strided_rows(mode):
    rows, hidden = (64, 2048) if mode.gpu else (3, 32)
    big, _, w = _inputs(mode, rows, 2 * hidden, seed=3)
    x, w = big[:, :hidden], w[:hidden]  # a row stride of 2*hidden, unit last stride
    assert rel_err(rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6)) < mode.rel_tol()


def test_rms_norm_rejects_bad_arguments():
    x = torch.randn(2, 8)
    with pytest.raises(KernelArgumentError, match="weight"):
        rms_norm(x, torch.ones(7), 1e-5)
    with pytest.raises(KernelArgumentError, match="residual"):
        add_rms_norm(x, torch.randn(3, 8), torch.ones(8), 1e-5)
    with pytest.raises(KernelArgumentError, match="stride"):
        rms_norm(torch.randn(8, 2).t(), torch.ones(8), 1e-5)
