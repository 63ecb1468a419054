"""Random extend batches over a token-level KV pool, shared by the attention and backend tests."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ExtendBatch:
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    k_buf: torch.Tensor
    v_buf: torch.Tensor
    r2t: torch.Tensor
    seq_lens: torch.Tensor
    qsl: torch.Tensor
    slot_mapping: torch.Tensor


def extend_batch(mode, prefix, q_lens, *, hq, hkv, head_dim, seed) -> ExtendBatch:
    """Sequences with ``prefix[b]`` cached tokens (random K/V already in the pool) and ``q_lens[b]`` new ones."""
    g = torch.Generator().manual_seed(seed)
    seq_lens = [p + n for p, n in zip(prefix, q_lens)]
    num_slots = sum(seq_lens) + 3
    k_buf = torch.randn(num_slots, hkv, head_dim, generator=g).to(mode.device, mode.dtype)
    v_buf = torch.randn(num_slots, hkv, head_dim, generator=g).to(mode.device, mode.dtype)
    perm = torch.randperm(num_slots, generator=g)
    r2t = torch.zeros(len(seq_lens), max(seq_lens) + 2, dtype=torch.int32)
    new_slots, used = [], 0
    for b, n in enumerate(seq_lens):
        r2t[b, :n] = perm[used:used + n].int()
        new_slots.append(r2t[b, prefix[b]:n].long())
        used += n
    total = sum(q_lens)
    rand = [torch.randn(total, h, head_dim, generator=g).to(mode.device, mode.dtype) for h in (hq, hkv, hkv)]
    qsl = torch.tensor([0] + list(torch.tensor(q_lens).cumsum(0)), dtype=torch.int32)
    return ExtendBatch(q=rand[0], k=rand[1], v=rand[2], k_buf=k_buf, v_buf=v_buf, r2t=r2t.to(mode.device),
                       seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=mode.device),
                       qsl=qsl.to(mode.device), slot_mapping=torch.cat(new_slots).to(mode.device))
