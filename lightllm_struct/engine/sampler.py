"""The batched sampler (torch path): penalties, grammar bitmask, greedy, temperature, min-p, top-k, top-p,
seeded noise.

Reproducibility regardless of the batch: a request's noise is a counter-based hash (Philox) of
(seed, step, token id), so it never depends on which rows share the batch or on a generator's state. The
Triton kernel (kernels/sampling.py) draws the same noise, so a seed picks the same tokens on CPU and GPU
wherever the logits agree.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from lightllm_struct.grammar.bitmask import apply_token_bitmask_inplace
from lightllm_struct.kernels.reference import SparsePenalties, apply_penalties, philox_uniform

_REACH = 20.0  # > max - min of the Gumbel noise of 24-bit uniforms (16.7 + 2.9)


@dataclass
class SamplingTensors:
    """One row per sequence that samples this step (all on the logits' device)."""

    temperature: torch.Tensor  # f32 [B], 0 = greedy
    top_p: torch.Tensor  # f32 [B]
    top_k: torch.Tensor  # i32 [B], 0 = off
    seed: torch.Tensor  # i64 [B]
    step: torch.Tensor  # i64 [B]: how many tokens the request has sampled before
    min_p: torch.Tensor | None = None  # f32 [B], 0 = off; None = off for every row
    penalties: SparsePenalties | None = None  # applied to the logits in place before anything else

    @classmethod
    def from_lists(cls, *, temperature: list[float], top_p: list[float], top_k: list[int], seed: list[int],
                   step: list[int], min_p: list[float] | None = None, penalties: SparsePenalties | None = None,
                   device: torch.device | str = "cpu") -> "SamplingTensors":
        # Built on the host and moved in two copies (floats, integers) rather than six small ones.
        min_p = min_p or [0.0] * len(temperature)
        floats = torch.tensor([temperature, top_p, min_p], dtype=torch.float32).to(device, non_blocking=True)
        ints = torch.tensor([top_k, seed, step], dtype=torch.int64).to(device, non_blocking=True)
        return cls(temperature=floats[0], top_p=floats[1], top_k=ints[0].to(torch.int32), seed=ints[1], step=ints[2],
                   min_p=floats[2], penalties=penalties)


def uniform_noise(seed: torch.Tensor, step: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The noise of every token of every row, ``[B, V]``: element (b, j) depends only on (seed[b], step[b], j)."""
    B = seed.shape[0]
    token = torch.arange(vocab_size, dtype=torch.int64, device=seed.device).expand(B, vocab_size)
    return philox_uniform(seed[:, None].expand(B, vocab_size), step[:, None].expand(B, vocab_size), token)


def _gumbel_max(scaled: torch.Tensor, seed: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """argmax(scaled + Gumbel noise) per row, drawing noise only where a token can still win.

    With 24-bit uniforms the Gumbel noise lies within [-2.9, 16.7], so a token more than ``_REACH`` below its
    row's maximum never wins: skipping it leaves the draw exactly as over the whole row.
    """
    top = scaled.max(dim=-1, keepdim=True).values
    # Masked tokens (-inf) get no noise, even in a row that allows nothing (where top - _REACH is -inf).
    rows, cols = torch.nonzero((scaled >= top - _REACH) & (scaled > float("-inf")), as_tuple=True)
    u = philox_uniform(seed[rows], step[rows], cols)
    scores = torch.full_like(scaled, float("-inf"))
    scores[rows, cols] = scaled[rows, cols] - torch.log(-torch.log(u))
    return scores.argmax(dim=-1)


def filter_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                       min_p: torch.Tensor | None = None) -> torch.Tensor:
    """Keep each row's tokens of probability >= min_p times its likeliest one's, of those the top-k, and of
    those the smallest nucleus of mass >= top_p; the rest become -inf."""
    V = logits.shape[1]
    if min_p is not None:
        floor = logits.max(dim=-1, keepdim=True).values + torch.log(min_p.clamp_min(1e-30))[:, None]
        logits = logits.masked_fill((logits < floor) & (min_p > 0)[:, None], float("-inf"))
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
    if params.penalties is not None:
        apply_penalties(logits, params.penalties)
    if bitmask is not None:
        apply_token_bitmask_inplace(logits, bitmask)
    greedy = params.temperature <= 0
    if bool(greedy.all()):
        return logits.argmax(dim=-1)
    temperature = torch.where(greedy, 1.0, params.temperature)[:, None]
    scaled = logits / temperature
    if needs_filter(params):  # the sort is the costliest part: skip it if unused
        scaled = filter_top_k_top_p(scaled, params.top_k, params.top_p, params.min_p)
    # Gumbel-max: argmax(logits/T + Gumbel) is an exact draw from softmax(logits/T).
    drawn = _gumbel_max(scaled, params.seed, params.step)
    return torch.where(greedy, logits.argmax(dim=-1), drawn)


def needs_filter(params: SamplingTensors) -> bool:
    """Whether any row has min-p, top-k or top-p on."""
    on = (params.top_k > 0) | (params.top_p < 1)
    if params.min_p is not None:
        on |= params.min_p > 0
    return bool(on.any())
