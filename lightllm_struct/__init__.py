"""lightllm-struct: LLM inference and serving built for structured generation.

The public face: ``LLM`` (offline engine), ``SamplingParams``, ``Constraint``, and ``generate`` (the client, in-process or over
HTTP). Imports are lazy so that ``import lightllm_struct`` stays cheap for the grammar engine alone.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "LLM": "lightllm_struct.llm",
    "SamplingParams": "lightllm_struct.request",
    "Constraint": "lightllm_struct.request",
    "RequestOutput": "lightllm_struct.request",
    "generate": "lightllm_struct.client",
    "agenerate": "lightllm_struct.client",
    "generate_batch": "lightllm_struct.client",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightllm_struct' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
