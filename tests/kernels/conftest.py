"""Kernel tests run twice: in Triton's CPU interpreter in fp32 at tiny shapes, and on a GPU in bf16 at real ones.

The interpreter's bf16 arithmetic is wrong, so the CPU variant stays in fp32; the root conftest sets
``TRITON_INTERPRET=1`` before anything imports Triton when no GPU is present.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch


@dataclass(frozen=True)
class Mode:
    device: str
    dtype: torch.dtype
    gpu: bool

    def rel_tol(self) -> float:
        """Tolerance on ||out - ref|| / ||ref||: fp32 arithmetic vs one bf16 rounding of the output."""
        return 1e-5 if self.dtype == torch.float32 else 2e-2


def _interpreter_active() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


MODES = [
    pytest.param(Mode("cpu", torch.float32, False), id="interp-fp32",
                 marks=pytest.mark.skipif(not _interpreter_active(), reason="Triton interpreter is off")),
    pytest.param(Mode("cuda", torch.bfloat16, True), id="gpu-bf16", marks=pytest.mark.gpu),
]


@pytest.fixture(params=MODES)
def mode(request) -> Mode:
    return request.param


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64; NaN anywhere fails."""
    out, ref = out.double().cpu(), ref.double().cpu()
    assert not torch.isnan(out).any(), "output has NaN"
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))
