"""Rank 0 -> all ranks broadcast of step messages: an opcode, small host metadata and a set of tensors.

A message costs two collectives, whatever the number of tensors (three when its metadata is large):

1. a fixed-size header on the control group (gloo; where idle ranks wait): ``(op, body length)`` and the
   metadata as JSON: host scalars and lists (``seq_lens_cpu``...) plus the name, dtype, shape and offset of
   each tensor, so receivers never read a device tensor to learn a shape; a body larger than the header
   follows in a second broadcast;
2. every tensor packed into one byte buffer on the data group's device (NCCL on GPUs), 16-byte aligned so
   each receiver gets its tensors as views of that buffer without copies.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

_ALIGN = 16
# The first broadcast of a message: (op, body length) and as much of the JSON body as fits; the metadata of
# a decode batch of a hundred sequences fits, so most messages cost two collectives (header, tensors).
_HEADER_BYTES = 4096


class Op(enum.IntEnum):
    """What a message asks the receiving ranks to do."""

    STEP = 1  # run one forward pass on the given inputs
    SETUP = 2  # (re)build per-run state, e.g. the KV cache once rank 0 knows its size
    SHUTDOWN = 3  # leave the loop and the groups
    LOGITS = 4  # project the given hidden rows through the LM head (joins its all-gather)


@dataclass
class Message:
    op: Op
    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def _dtype_from_name(name: str) -> torch.dtype:
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r} in a step message")
    return dtype


class StepChannel:
    """Broadcast of step messages from rank 0 (``send``) to every other rank (``recv``).

    Parameters
    ----------
    rank:
        This rank; only rank 0 may send, only the others may receive.
    control_group, data_group:
        Process groups for the header/metadata (gloo) and the packed tensors (None = default group).
    device:
        Where the packed tensors travel and where receivers get them (the data group's device).
    """

    def __init__(self, *, rank: int, control_group: Any, data_group: Any = None,
                 device: torch.device | str = "cpu") -> None:
        self.rank = rank
        self.control_group = control_group
        self.data_group = data_group
        self.device = torch.device(device)

    def send(self, op: Op, meta: dict[str, Any] | None = None,
             tensors: dict[str, torch.Tensor] | None = None) -> None:
        """Broadcast one message (rank 0 only). Tensors on any device; they travel on ``self.device``."""
        assert self.rank == 0, "only rank 0 sends step messages"
        tensors = tensors or {}
        layout, total = [], 0
        for name, t in tensors.items():
            nbytes = t.numel() * t.element_size()
            layout.append([name, str(t.dtype), list(t.shape), total, nbytes])
            total += -(-nbytes // _ALIGN) * _ALIGN
        body = json.dumps({"meta": meta or {}, "layout": layout, "total": total}).encode()
        head = torch.zeros(_HEADER_BYTES, dtype=torch.uint8)
        head[:16].view(torch.int64).copy_(torch.tensor([int(op), len(body)]))
        inline = min(len(body), _HEADER_BYTES - 16)
        head[16:16 + inline] = torch.frombuffer(bytearray(body[:inline]), dtype=torch.uint8)
        dist.broadcast(head, src=0, group=self.control_group)
        if len(body) > inline:  # large batches: the rest of the metadata in a second broadcast
            rest = torch.frombuffer(bytearray(body[inline:]), dtype=torch.uint8)
            dist.broadcast(rest, src=0, group=self.control_group)
        if total:
            buf = torch.empty(total, dtype=torch.uint8, device=self.device)
            for (_, _, _, offset, nbytes), t in zip(layout, tensors.values()):
                flat = t.detach().reshape(-1)
                # bool and other 1-byte types view as uint8 directly; wider types need a contiguous source
                buf[offset:offset + nbytes].copy_(flat.contiguous().view(torch.uint8))
            dist.broadcast(buf, src=0, group=self.data_group)

    def recv(self) -> Message:
        """Wait for the next message (ranks > 0); tensors come back as views of one buffer on ``device``."""
        assert self.rank != 0, "rank 0 sends, it never receives step messages"
        head = torch.empty(_HEADER_BYTES, dtype=torch.uint8)
        dist.broadcast(head, src=0, group=self.control_group)
        op, nbody = (int(v) for v in head[:16].view(torch.int64).tolist())
        body = head[16:16 + nbody].numpy().tobytes()
        if nbody > _HEADER_BYTES - 16:
            rest = torch.empty(nbody - (_HEADER_BYTES - 16), dtype=torch.uint8)
            dist.broadcast(rest, src=0, group=self.control_group)
            body += rest.numpy().tobytes()
        decoded = json.loads(body)
        tensors: dict[str, torch.Tensor] = {}
        if decoded["total"]:
            buf = torch.empty(decoded["total"], dtype=torch.uint8, device=self.device)
            dist.broadcast(buf, src=0, group=self.data_group)
            for name, dtype_name, shape, offset, nbytes in decoded["layout"]:
                raw = buf[offset:offset + nbytes]
                tensors[name] = raw.view(_dtype_from_name(dtype_name)).view(shape)
        return Message(Op(op), decoded["meta"], tensors)
