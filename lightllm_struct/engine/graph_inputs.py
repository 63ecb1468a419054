"""The shapes captured CUDA graphs serve, and how a step is padded to one of them.

A captured step has a fixed shape: ``size`` sequences of ``k`` new tokens each. A step of B sequences of at
most k new tokens each runs in the graph of the smallest captured ``(size >= B, k' >= k)``. It is laid out as
``size * k'`` decode rows, row ``i * k' + j`` being token j of sequence i: a sequence with n < k' new tokens
takes the last n rows of its block (the first ones are dummies), and rows past B are padding. Dummy and
padding rows have context length 0 (attention writes zeros for them) and put their K/V into a scratch slot
the engine reserved, so they never touch a live request's cache; a real row's context ends at its own token,
which is the causal mask among a sequence's new tokens.
"""
from __future__ import annotations

import torch

# Dense at small batches, where a step's cost grows fastest with padding; every 32 above 128.
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256)
_STRIDE_ABOVE_DEFAULTS = 64

# Rows of the host layout returned by :func:`pad_step`.
IDS, POSITIONS, SLOTS, ROW_LENS = range(4)


def capture_sizes(max_num_seqs: int, *, base: tuple[int, ...] = DEFAULT_BATCH_SIZES) -> tuple[int, ...]:
    """Batch sizes to capture so every batch of 1..``max_num_seqs`` sequences has a graph.

    ``base`` up to ``max_num_seqs``, then every 64 beyond its largest, and ``max_num_seqs`` itself.
    """
    sizes = {s for s in base if s < max_num_seqs}
    size = max(base) + _STRIDE_ABOVE_DEFAULTS
    while size < max_num_seqs:
        sizes.add(size)
        size += _STRIDE_ABOVE_DEFAULTS
    sizes.add(max_num_seqs)
    return tuple(sorted(sizes))


def tokens_per_seq_sizes(max_tokens: int) -> tuple[int, ...]:
    """New tokens per sequence to capture: powers of two up to ``max_tokens``, and ``max_tokens`` itself."""
    ks = [1]
    while ks[-1] * 2 <= max_tokens:
        ks.append(ks[-1] * 2)
    if ks[-1] != max_tokens:
        ks.append(max_tokens)
    return tuple(ks)


def bucket(n: int, sizes: tuple[int, ...]) -> int | None:
    """The smallest of the (sorted) ``sizes`` that holds ``n``; None if none does."""
    return next((s for s in sizes if s >= n), None)


def pad_step(token_ids: list[list[int]], starts: list[int], slots: list[int], *, size: int, k: int,
             scratch_slot: int) -> torch.Tensor:
    """The int64 ``[4, size * k]`` host layout (ids, positions, slots, row context lengths) of one step.

    Parameters
    ----------
    token_ids:
        The new tokens of each sequence (1..k each), in batch order.
    starts:
        Context position of each sequence's first new token.
    slots:
        The KV slots of all new tokens, flattened in the same order.
    size, k:
        The captured shape; ``len(token_ids) <= size``.
    scratch_slot:
        Where dummy and padding rows write their K/V.
    """
    total = size * k
    out = torch.zeros(4, total, dtype=torch.int64)
    if k == 1:  # a plain decode step: no dummies, one vectorised fill
        n = len(token_ids)
        out[IDS, :n] = torch.tensor([t[0] for t in token_ids], dtype=torch.int64)
        out[POSITIONS, :n] = torch.tensor(starts, dtype=torch.int64)
        out[SLOTS, :n] = torch.tensor(slots, dtype=torch.int64)
        out[ROW_LENS, :n] = out[POSITIONS, :n] + 1
        out[SLOTS, n:] = scratch_slot
        return out
    index: list[int] = []
    positions: list[int] = []
    ids: list[int] = []
    for i, (toks, start) in enumerate(zip(token_ids, starts)):
        first = i * k + k - len(toks)
        index.extend(range(first, first + len(toks)))
        positions.extend(range(start, start + len(toks)))
        ids.extend(toks)
    out[SLOTS] = scratch_slot
    where = torch.tensor(index, dtype=torch.int64)
    pos = torch.tensor(positions, dtype=torch.int64)
    out[IDS, where] = torch.tensor(ids, dtype=torch.int64)
    out[POSITIONS, where] = pos
    out[SLOTS, where] = torch.tensor(slots, dtype=torch.int64)
    out[ROW_LENS, where] = pos + 1
    return out
