"""The elementwise/fused operations of a decoder layer, behind one swappable table.

The torch versions here are the CPU path and the reference; GPU kernels (``lightllm_struct.kernels``) provide
another :class:`LayerOps` with the same signatures, handed to the model at construction, so no module-level
state decides which implementation runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * x / rms(x)``, accumulated in fp32 like transformers' ``LlamaRMSNorm``."""
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then norm; returns ``(rms_norm(x + residual), x + residual)``."""
    summed = x + residual
    return rms_norm(summed, weight, eps), summed


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q [T, Hq, D]`` and ``k [T, Hkv, D]`` by per-token angles; ``cos``/``sin`` are ``[T, D/2]``.

    Uses the half-split (GPT-NeoX / HF ``rotate_half``) layout, which is what HF checkpoints expect
    (the GGUF converter undoes llama.cpp's interleaved permutation).
    """
    cos = cos.unsqueeze(1).to(q.dtype)
    sin = sin.unsqueeze(1).to(q.dtype)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """SwiGLU: ``silu(gate) * up`` for ``gate_up = [gate | up]`` on the last dim."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


@dataclass(frozen=True)
class LayerOps:
    """The implementations a model's layers call; swap the whole table to move to other kernels."""

    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor] = rms_norm
    add_rms_norm: Callable[..., tuple[torch.Tensor, torch.Tensor]] = add_rms_norm
    apply_rotary: Callable[..., tuple[torch.Tensor, torch.Tensor]] = apply_rotary
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor] = silu_and_mul


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
