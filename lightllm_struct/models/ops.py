"""The elementwise/fused operations of a decoder layer, behind one swappable table.

``TORCH_OPS`` are the kernels' torch references (``kernels/reference.py``: the CPU path); ``triton_ops()`` the
Triton kernels with the same signatures. The table is handed to the model at construction (the engine picks
it in ``engine/backends.py``), so no module-level state decides which implementation runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from lightllm_struct.kernels import reference


@dataclass(frozen=True)
class LayerOps:
    """The implementations a model's layers call; swap the whole table to move to other kernels."""

    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = reference.rms_norm
    add_rms_norm: Callable[..., tuple[torch.Tensor, torch.Tensor]] = reference.add_rms_norm
    apply_rotary: Callable[..., tuple[torch.Tensor, torch.Tensor]] = reference.apply_rotary
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor] = reference.silu_and_mul


TORCH_OPS = LayerOps()


def triton_ops() -> LayerOps:
    """The Triton kernels of ``lightllm_struct.kernels`` as a :class:`LayerOps` table (same signatures).

    Built on call, not at import: the kernels import Triton, which a CPU-only install may lack.

    Raises
    ------
    ImportError
        When Triton is not installed.
    """
    from lightllm_struct.kernels.activation import silu_and_mul as triton_silu_and_mul
    from lightllm_struct.kernels.norm import add_rms_norm as triton_add_rms_norm
    from lightllm_struct.kernels.norm import rms_norm as triton_rms_norm
    from lightllm_struct.kernels.rope import apply_rotary as triton_apply_rotary

    return LayerOps(rms_norm=triton_rms_norm, add_rms_norm=triton_add_rms_norm, apply_rotary=triton_apply_rotary,
                    silu_and_mul=triton_silu_and_mul)
