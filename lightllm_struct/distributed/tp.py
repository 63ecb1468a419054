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


SINGLE = TensorParallel()
