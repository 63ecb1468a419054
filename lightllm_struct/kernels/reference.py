"""The torch references of the kernels of this package: the CPU path, and what the kernel tests check against.

Triton-free on purpose: Triton installs only on some platforms, and the CPU engine (``models.ops.TORCH_OPS``,
``engine.sampler``) runs these. Each computes in fp32 and rounds once at the end, as the kernels do. The
names and signatures are those of the kernels (``kernels.norm.rms_norm`` <-> ``reference.rms_norm``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Philox-4x32-10: round multipliers A and B, key increments A and B (as the sampling kernel).
PHILOX_ROUND_A, PHILOX_ROUND_B, PHILOX_KEY_A, PHILOX_KEY_B = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_M32 = 0xFFFFFFFF
# The largest float32 below 1. The 24 bits centred in their bucket, (2**24 - 0.5) / 2**24, round to 1.0 in
# float32, where -log(-log(u)) is +inf: that token would win whatever its probability, and a masked one
# (-inf + inf = NaN, which argmax takes for the maximum) would break its grammar. Clamping keeps u < 1.
U_MAX = 1.0 - 2.0 ** -24


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``weight * x / rms(x)`` over the last dim, normalised in fp32 like transformers' ``LlamaRMSNorm``."""
    xf = x.float()
    normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)
    return (normed.float() * weight.float()).to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual add then norm: ``(rms_norm(x + residual), x + residual)``."""
    summed = (x.float() + residual.float()).to(x.dtype)
    return rms_norm(summed, weight, eps), summed


def apply_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q [T, Hq, D]`` and ``k [T, Hkv, D]`` by per-token angles; ``cos``/``sin`` are ``[T, D/2]``.

    The half-split (GPT-NeoX / HF ``rotate_half``) layout, which HF checkpoints expect (the GGUF converter
    undoes llama.cpp's interleaved permutation).
    """
    c, s = cos.float()[:, None, :], sin.float()[:, None, :]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)

    return rotate(q), rotate(k)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """SwiGLU: ``silu(gate) * up`` for ``x = [gate | up]`` on the last dim."""
    gate, up = x.float().chunk(2, dim=-1)
    return (F.silu(gate) * up).to(x.dtype)


def philox_uniform(seed: torch.Tensor, step: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Uniform (0, 1) float32 noise of each (seed, step, token) triple (equal-shaped int64 tensors), never 1.

    Philox-4x32-10 of counter ``(token, step_lo, step_hi, 0)`` keyed by ``(seed_lo, seed_hi)``; the top 24
    bits of the first output word, centred in their bucket. The 32x32-bit products are taken in int64, whose
    wrapping multiplication keeps the exact bits of the 64-bit product; shifted values are masked.
    """
    c0, c1, c2 = token, step & _M32, (step >> 32) & _M32
    c3 = torch.zeros_like(c0)
    k0, k1 = seed & _M32, (seed >> 32) & _M32
    for _ in range(10):
        prod_b, prod_a = c2 * PHILOX_ROUND_B, c0 * PHILOX_ROUND_A
        c0, c2 = ((prod_b >> 32) & _M32) ^ c1 ^ k0, ((prod_a >> 32) & _M32) ^ c3 ^ k1
        c1, c3 = prod_b & _M32, prod_a & _M32
        k0, k1 = (k0 + PHILOX_KEY_A) & _M32, (k1 + PHILOX_KEY_B) & _M32
    u = (((c0 >> 8) & 0xFFFFFF).to(torch.float32) + 0.5) * (2.0 ** -24)
    return u.clamp_(max=U_MAX)


@dataclass
class SparsePenalties:
    """The entries of the rows that have penalties or biases (all on the logits' device).

    Attributes
    ----------
    index:
        int32 ``[2, N]``: row and token of every entry.
    values:
        float32 ``[3, N]``: output count, seen (0 or 1) and bias of every entry.
    row_params:
        float32 ``[3, B]``: repetition, frequency and presence penalty of every row (1, 0, 0 = none).
    """

    index: torch.Tensor
    values: torch.Tensor
    row_params: torch.Tensor

    @classmethod
    def from_rows(cls, entries: list[dict[int, tuple[float, float, float]]], row_params: list[tuple[float, float,
                  float]], *, device: torch.device | str = "cpu") -> "SparsePenalties":
        """From one ``{token: (count, seen, bias)}`` dict and one ``(rep, freq, pres)`` a row."""
        rows = [r for r, row in enumerate(entries) for _ in row]
        tokens = [t for row in entries for t in row]
        values = [v for row in entries for v in row.values()]
        index = torch.tensor([rows, tokens], dtype=torch.int32).reshape(2, -1)
        vals = torch.tensor([[v[i] for v in values] for i in range(3)], dtype=torch.float32).reshape(3, -1)
        params = torch.tensor([[p[i] for p in row_params] for i in range(3)], dtype=torch.float32).reshape(3, -1)
        return cls(index.to(device, non_blocking=True), vals.to(device, non_blocking=True),
                   params.to(device, non_blocking=True))

    @property
    def num_entries(self) -> int:
        return self.index.shape[1]


def apply_penalties(logits: torch.Tensor, pen: SparsePenalties) -> torch.Tensor:
    """Plain torch version of ``kernels.penalties.apply_penalties`` (in place; the engine's CPU path)."""
    rows, tokens = pen.index.long()
    count, seen, bias = pen.values
    rep, freq, pres = pen.row_params[:, rows]
    z = logits[rows, tokens].float()
    z = torch.where(seen > 0, torch.where(z > 0, z / rep, z * rep), z)
    z = z - freq * count - torch.where(count > 0, pres, 0.0) + bias
    logits[rows, tokens] = z.to(logits.dtype)
    return logits
