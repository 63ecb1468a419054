"""The Triton implementations of a decoder layer's fused ops, as one ``LayerOps`` table.

Hand ``TRITON_OPS`` to ``LlamaForCausalLM(..., ops=TRITON_OPS)`` on a GPU; the signatures are those of
``models.ops``, whose torch versions stay the CPU path.
"""
from __future__ import annotations

from lightllm_struct.kernels.activation import silu_and_mul
from lightllm_struct.kernels.norm import add_rms_norm, rms_norm
from lightllm_struct.kernels.rope import apply_rotary
from lightllm_struct.models.ops import LayerOps

TRITON_OPS = LayerOps(rms_norm=rms_norm, add_rms_norm=add_rms_norm, apply_rotary=apply_rotary,
                      silu_and_mul=silu_and_mul)
