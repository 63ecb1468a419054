"""Shared checks for the Triton kernel wrappers: typed argument errors and small launch helpers.

Every wrapper validates shapes, dtypes, devices and strides on the host before launching, so a wrong call
fails with a :class:`KernelArgumentError` naming the argument instead of reading out of bounds on the device.
"""
from __future__ import annotations

import functools

import torch

from lightllm_struct.errors import LightLLMStructError

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int32, torch.int64)


class KernelArgumentError(LightLLMStructError, ValueError):
    """A kernel wrapper got a tensor of the wrong shape, dtype, device or layout (a caller bug)."""


def check(cond: bool, message: str) -> None:
    """Raise :class:`KernelArgumentError` with ``message`` unless ``cond``."""
    if not cond:
        raise KernelArgumentError(message)


def check_tensor(name: str, t: torch.Tensor, *, ndim: int, dtypes: tuple[torch.dtype, ...],
                 device: torch.device | None = None, last_contiguous: bool = True) -> None:
    """Check rank, dtype, device and (optionally) a unit stride on the last dimension."""
    check(isinstance(t, torch.Tensor), f"{name} must be a tensor, got {type(t).__name__}")
    check(t.dim() == ndim, f"{name} must have {ndim} dims, got shape {tuple(t.shape)}")
    check(t.dtype in dtypes, f"{name} has dtype {t.dtype}, expected one of {dtypes}")
    if device is not None:
        check(t.device == device, f"{name} is on {t.device}, expected {device}")
    if last_contiguous and t.numel() > 0:
        check(t.stride(-1) == 1, f"{name} must have unit stride on its last dim, got {t.stride()}")


def next_pow2(n: int) -> int:
    """Smallest power of two >= ``n`` (Triton block sizes must be powers of two)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def dot_precision(dtype: torch.dtype) -> str:
    """``tl.dot`` input precision: full fp32 for fp32 tensors (the GPU-vs-CPU equivalence runs need it;
    Triton's default would round them to tf32), the native one otherwise."""
    return "ieee" if dtype == torch.float32 else "tf32"


@functools.lru_cache(maxsize=None)
def num_sms(device: torch.device) -> int:
    """Multiprocessors of a CUDA device (a small stand-in on the CPU interpreter), cached per device."""
    return torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
