"""Packed token bitmasks: int32 ``[batch, ceil(vocab / 32)]``, bit j of word i = token ``32 * i + j``.

The layout (little-endian bit order) is the one xgrammar, llguidance and outlines-core share, so
samplers and kernels written for them read ours unchanged.
"""
from __future__ import annotations

import numpy as np
import torch


def allocate_token_bitmask(batch_size: int, vocab_size: int) -> torch.Tensor:
    """A ``[batch_size, ceil(vocab_size / 32)]`` int32 CPU tensor with every token allowed (all -1)."""
    return torch.full((batch_size, (vocab_size + 31) // 32), -1, dtype=torch.int32)


def pack_token_ids(token_ids: np.ndarray, num_words: int) -> np.ndarray:
    """int32 words with the bits of ``token_ids`` set."""
    flags = np.zeros(num_words * 32, dtype=bool)
    flags[token_ids] = True
    return np.packbits(flags, bitorder="little").view("<i4").astype(np.int32, copy=False)


def unpack_bitmask(words: np.ndarray | torch.Tensor, vocab_size: int) -> np.ndarray:
    """bool ``[vocab_size]`` (or ``[batch, vocab_size]``) of allowed tokens."""
    arr = words.cpu().numpy() if isinstance(words, torch.Tensor) else np.asarray(words)
    arr = np.ascontiguousarray(arr.astype("<i4", copy=False))
    bits = np.unpackbits(arr.view(np.uint8), axis=-1, bitorder="little").astype(bool)
    return bits[..., :vocab_size]


def apply_token_bitmask_inplace(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """Set the logits of disallowed tokens to -inf, in place.

    Parameters
    ----------
    logits:
        float ``[batch, V]`` (or ``[V]``); columns beyond ``32 * bitmask.shape[-1]`` are disallowed.
    bitmask:
        int32 ``[batch, ceil(Vg / 32)]`` (or 1-D) packed as by :func:`allocate_token_bitmask`.
    """
    words = bitmask.to(logits.device)
    bits = (words.unsqueeze(-1) >> torch.arange(32, device=logits.device, dtype=torch.int32)) & 1
    allowed = bits.reshape(*words.shape[:-1], -1).bool()
    vocab = logits.shape[-1]
    if allowed.shape[-1] < vocab:
        pad = torch.zeros(*allowed.shape[:-1], vocab - allowed.shape[-1], dtype=torch.bool, device=logits.device)
        allowed = torch.cat([allowed, pad], dim=-1)
    logits.masked_fill_(~allowed[..., :vocab], float("-inf"))
