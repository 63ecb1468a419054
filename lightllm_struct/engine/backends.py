"""The one place that chooses kernel implementations: ``EngineConfig.kernels`` -> :class:`Backends`.

Attention, the layers' fused ops and the sampler are chosen together and once, when the engine is built;
nothing decides at run time which implementation runs.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lightllm_struct.config import ConfigError
from lightllm_struct.models.ops import TORCH_OPS, LayerOps, triton_ops
from lightllm_struct.registry import Registry


@dataclass(frozen=True)
class Backends:
    """What the engine runs: ``attention`` names a ``models.attention.ATTENTION_BACKENDS`` entry, ``layer_ops``
    is the model's ``LayerOps`` table and ``sampler`` is ``sample(logits, params, bitmask) -> token ids``."""

    name: str
    attention: str
    layer_ops: LayerOps
    sampler: Callable


KERNEL_BACKENDS: Registry[Backends] = Registry("kernel backend")


@KERNEL_BACKENDS.register("torch")
def _torch() -> Backends:
    from lightllm_struct.engine.sampler import sample

    return Backends(name="torch", attention="torch", layer_ops=TORCH_OPS, sampler=sample)


@KERNEL_BACKENDS.register("triton")
def _triton() -> Backends:
    from lightllm_struct.kernels.sampling import sample

    return Backends(name="triton", attention="triton", layer_ops=triton_ops(), sampler=sample)


def triton_usable(device: torch.device) -> bool:
    """Triton kernels can run here: Triton is installed, on CUDA, or on the CPU through its interpreter."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def resolve_backends(kernels: str, device: torch.device) -> Backends:
    """The backends ``kernels`` ("auto", "torch", "triton") names on ``device``.

    "auto" is Triton on CUDA when Triton is installed, and torch everywhere else (the CPU interpreter is for
    tests, never an automatic choice).

    Raises
    ------
    ConfigError
        "triton" where Triton cannot run (not installed, or the CPU without ``TRITON_INTERPRET=1``).
    UnknownChoiceError
        A name no backend is registered under (the message lists the supported ones).
    """
    if kernels == "auto":
        kernels = "triton" if device.type == "cuda" and triton_usable(device) else "torch"
    elif kernels == "triton" and not triton_usable(device):
        raise ConfigError(f"kernels='triton' needs Triton installed and a CUDA device (or TRITON_INTERPRET=1 "
                          f"on the CPU); device is {device.type}. Supported here: torch", param="kernels")
    return KERNEL_BACKENDS.get(kernels)
