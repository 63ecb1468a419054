"""The batched sampler (torch path): grammar bitmask, greedy, temperature, top-k, top-p, seeded noise.

Reproducibility regardless of the batch: a request's noise is a counter-based hash of (seed, step, token id),
computed in int64 arithmetic, so it never depends on which rows share the batch or on a generator's state.
The Triton kernel (kernels/sampling.py) implements the same hash, so both paths draw the same tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# splitmix64 constants, as signed int64 (torch has no uint64 arithmetic; multiplication wraps the same way).
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)
_STEP = 0x632BE59BD9B4E019


@dataclass
class SamplingTensors:
    """One row per sequence that samples this step (all on the logits' device)."""

    temperature: torch.Tensor  # f32 [B], 0 = greedy
    top_p: torch.Tensor  # f32 [B]
    top_k: torch.Tensor  # i32 [B], 0 = off
    seed: torch.Tensor  # i64 [B]
    step: torch.Tensor  # i64 [B]: how many tokens the request has sampled before

    @classmethod
    def from_lists(cls, *, temperature: list[float], top_p: list[float], top_k: list[int], seed: list[int],
                   step: list[int], device: torch.device | str = "cpu") -> "SamplingTensors":
        return cls(
            temperature=torch.tensor(temperature, dtype=torch.float32, device=device),
            top_p=torch.tensor(top_p, dtype=torch.float32, device=device),
            top_k=torch.tensor(top_k, dtype=torch.int32, device=device),
            seed=torch.tensor(seed, dtype=torch.int64, device=device),
            step=torch.tensor(step, dtype=torch.int64, device=device),
        )


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    x = (x ^ _shr(x, 30)) * _MIX1
    x = (x ^ _shr(x, 27)) * _MIX2
    return x ^ _shr(x, 31)


def uniform_noise(seed: torch.Tensor, step: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Uniform (0, 1) float32 ``[B, V]``; element (b, j) depends only on (seed[b], step[b], j)."""
    base = _mix(seed * _GOLDEN + step * _STEP)
    idx = torch.arange(vocab_size, dtype=torch.int64, device=seed.device)
    bits = _mix(base[:, None] + (idx[None, :] + 1) * _GOLDEN)
    top24 = _shr(bits, 40).to(torch.float32)  # 24 bits: exact in float32
    return (top24 + 0.5) * (1.0 / (1 << 24))


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Set disallowed tokens to -inf in place. Columns beyond the mask's width are disallowed (padded vocab)."""
    B, V = logits.shape
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    allowed = ((bitmask.to(logits.device)[:, :, None] >> shifts) & 1).bool().reshape(B, -1)
    width = min(V, allowed.shape[1])
    logits[:, :width].masked_fill_(~allowed[:, :width], float("-inf"))
    if V > width:
        logits[:, width:] = float("-inf")
    return logits


def _filter_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Keep each row's top-k tokens and its smallest nucleus of mass >= top_p; the rest become -inf."""
    V = logits.shape[1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(V, device=logits.device)[None, :]
    k = torch.where(top_k > 0, top_k.to(torch.int64), V)[:, None]
    sorted_logits = sorted_logits.masked_fill(ranks >= k, float("-inf"))
    probs = sorted_logits.softmax(dim=-1)
    # A token stays if the mass strictly before it is < top_p: the first token always stays.
    mass_before = probs.cumsum(dim=-1) - probs
    sorted_logits = sorted_logits.masked_fill(mass_before >= top_p[:, None], float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter_(1, order, sorted_logits)


def sample(logits: torch.Tensor, params: SamplingTensors, bitmask: torch.Tensor | None = None) -> torch.Tensor:
    """Pick one token a row.

    Parameters
    ----------
    logits:
        float32 ``[B, V]``; modified in place when a bitmask is given.
    params:
        Per-row sampling settings.
    bitmask:
        int32 ``[B, ceil(Vg/32)]`` or None; bit j of word i allows token 32*i+j; a free row is all ones.

    Returns
    -------
    torch.Tensor
        int64 ``[B]`` token ids.
    """
    logits = logits.float()
    if bitmask is not None:
        logits = apply_bitmask(logits, bitmask)
    greedy = params.temperature <= 0
    if bool(greedy.all()):
        return logits.argmax(dim=-1)
    temperature = torch.where(greedy, 1.0, params.temperature)[:, None]
    scaled = _filter_top_k_top_p(logits / temperature, params.top_k, params.top_p)
    # Gumbel-max: argmax(logits/T + Gumbel) is an exact draw from softmax(logits/T).
    gumbel = -torch.log(-torch.log(uniform_noise(params.seed, params.step, logits.shape[1])))
    drawn = (scaled + gumbel).argmax(dim=-1)
    return torch.where(greedy, logits.argmax(dim=-1), drawn)
