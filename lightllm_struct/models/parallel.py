"""The tensor-parallel context a model's layers are built with.

Size 1 means no communication at all, so the single-device path pays nothing for being TP-aware.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class TensorParallel:
    """Rank ``rank`` of ``size`` ranks; ``group`` is the torch.distributed process group (None = default)."""

    rank: int = 0
    size: int = 1
    group: Any = None

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.size):
            raise ValueError(f"tensor-parallel rank {self.rank} out of range for size {self.size}")

    def all_reduce(self, x: torch.Tensor) -> torch.Tensor:
        """Sum ``x`` over ranks, in place; returns ``x``."""
        if self.size > 1:
            dist.all_reduce(x, group=self.group)
        return x

    def all_gather(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Concatenate every rank's ``x`` along ``dim`` (rank order)."""
        if self.size == 1:
            return x
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous(), group=self.group)
        return torch.cat(parts, dim=dim)

    def shard(self, total: int) -> tuple[int, int]:
        """The [start, end) of this rank's equal share of ``total`` (which must divide evenly)."""
        if total % self.size:
            raise ValueError(f"{total} is not divisible by the tensor-parallel size {self.size}")
        per = total // self.size
        return self.rank * per, (self.rank + 1) * per

    def shard_balanced(self, total: int) -> tuple[int, int]:
        """The [start, end) of this rank's share of ``total`` items split as evenly as possible.

        The first ``total % size`` ranks take one item more, so e.g. 3 KV heads over 2 ranks is 2 + 1: what
        a model whose head count the TP size does not divide (SmolLM2-135M's 9 heads, 3 KV heads) needs.
        """
        if total < self.size:
            raise ValueError(f"cannot split {total} items over {self.size} tensor-parallel ranks")
        per, extra = divmod(total, self.size)
        start = self.rank * per + min(self.rank, extra)
        return start, start + per + (1 if self.rank < extra else 0)


SINGLE = TensorParallel()
