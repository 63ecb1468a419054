"""Errors raised while reading a model's configuration or weights."""
from __future__ import annotations

from lightllm_struct.errors import LightLLMStructError


class ModelLoadError(LightLLMStructError):
    """A model folder or file that cannot be loaded (missing files, bad weights, wrong shapes)."""


class UnsupportedArchitecture(ModelLoadError):
    """The checkpoint's architecture (or one of its options) is not one this package implements."""
