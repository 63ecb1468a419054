from __future__ import annotations

import math

import pytest
import torch

from lightllm_struct.kernels._common import KernelArgumentError
from lightllm_struct.kernels.rope import (
    apply_rotary, apply_rotary_reference, cos_sin_cache, rope_inv_freq,
)
from tests.kernels.conftest import rel_err

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}


def test_rotary_matches_reference(mode):
    tokens, hq, hkv, d = (512, 32, 8, 128) if mode.gpu else (5, 4, 2, 16)
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(tokens, hq + 2 * hkv, d, generator=g).to(mode.device, mode.dtype)
    q, k = qkv[:, :hq], qkv[:, hq:hq + hkv]  # strided views, as a fused QKV projection yields
    cos, sin = cos_sin_cache(4096, rope_inv_freq(d, 500000.0, LLAMA3_SCALING))
    pos = torch.randint(0, 4096, (tokens,), generator=g)
    cos, sin = cos[pos].to(mode.device), sin[pos].to(mode.device)
    q_out, k_out = apply_rotary(q, k, cos, sin)
    q_ref, k_ref = apply_rotary_reference(q, k, cos, sin)
    assert rel_err(q_out, q_ref) < mode.rel_tol() and rel_err(k_out, k_ref) < mode.rel_tol()


def test_llama3_scaling_keeps_high_and_divides_low_frequencies():
    plain = rope_inv_freq(128, 500000.0)
    scaled = rope_inv_freq(128, 500000.0, LLAMA3_SCALING)
    wavelen = 2 * math.pi / plain
    high = wavelen < 8192 / 4.0
    low = wavelen > 8192 / 1.0
    assert torch.equal(scaled[high], plain[high])
    assert torch.allclose(scaled[low], plain[low] / 8.0)
    mid = ~high & ~low
    assert bool(((scaled[mid] <= plain[mid]) & (scaled[mid] >= plain[mid] / 8.0)).all())


def test_rotary_rejects_bad_cos_shape():
    q, k = torch.randn(3, 2, 8), torch.randn(3, 1, 8)
    with pytest.raises(KernelArgumentError, match="cos"):
        apply_rotary(q, k, torch.randn(3, 8), torch.randn(3, 4))
