from __future__ import annotations


import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.reference import apply_rotary as apply_rotary_reference
from lightllm_struct.kernels.rope import apply_rotary
from lightllm_struct.models.config import RopeScaling
from lightllm_struct.models.layers import RotaryEmbedding
from tests.kernels.conftest import rel_err

LLAMA3_SCALING = RopeScaling(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192)


def test_rotary_matches_reference(mode):
    tokens, hq, hkv, d = (512, 32, 8, 128) if mode.gpu else (5, 4, 2, 16)
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(tokens, hq + 2 * hkv, d, generator=g).to(mode.device, mode.dtype)
    q, k = qkv[:, :hq], qkv[:, hq:hq + hkv]  # strided views, as a fused QKV projection yields
    pos = torch.randint(0, 4096, (tokens,), generator=g)
    cos, sin = RotaryEmbedding(d, 500000.0, LLAMA3_SCALING)(pos, 4096)
    cos, sin = cos.to(mode.device), sin.to(mode.device)
    q_out, k_out = apply_rotary(q, k, cos, sin)
    q_ref, k_ref = apply_rotary_reference(q, k, cos, sin)
    assert rel_err(q_out, q_ref) < mode.rel_tol() and rel_err(k_out, k_ref) < mode.rel_tol()


def test_rotary_rejects_bad_cos_shape():
    q, k = torch.randn(3, 2, 8), torch.randn(3, 1, 8)
    with pytest.raises(KernelArgumentError, match="cos"):
        apply_rotary(q, k, torch.randn(3, 8), torch.randn(3, 4))
