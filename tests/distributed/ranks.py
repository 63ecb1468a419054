"""Bodies of spawned ranks used by the distributed tests (top-level, so spawn can pickle them by name)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from lightllm_struct.distributed.channel import Message
from lightllm_struct.distributed.group import DistContext
from lightllm_struct.distributed.worker import channel_for, serve_steps


class EchoHandler:
    """Sends every received message back to rank 0 (broadcast from rank 1), so rank 0 can compare exactly."""

    def __init__(self) -> None:
        self.setups = 0

    def _echo(self, kind: str, msg: Message) -> None:
        described = {name: (str(t.dtype), list(t.shape), t.cpu().float().tolist() if t.is_floating_point()
                            else t.cpu().tolist()) for name, t in msg.tensors.items()}
        dist.broadcast_object_list([(kind, msg.meta, described)], src=1)

    def setup(self, msg: Message) -> None:
        self.setups += 1
        self._echo("setup", msg)

    def step(self, msg: Message) -> None:
        # A step joins the data group's all-reduce the way a model shard would.
        x = torch.full((3,), float(msg.meta.get("value", 0)))
        dist.all_reduce(x)
        self._echo("step", msg)


def echo_main(ctx: DistContext) -> None:
    handler = EchoHandler()
    steps = serve_steps(channel_for(ctx), handler)
    # Report how many steps ran, so rank 0 knows the loop ended through SHUTDOWN and not an error.
    dist.broadcast_object_list([("done", steps, handler.setups)], src=1)


def idle_main(ctx: DistContext) -> None:
    serve_steps(channel_for(ctx), EchoHandler())


class _Noop:
    def setup(self, msg: Message) -> None:
        pass

    def step(self, msg: Message) -> None:
        pass

    def logits(self, msg: Message) -> None:
        pass


def noop_main(ctx: DistContext) -> None:
    serve_steps(channel_for(ctx), _Noop())


def allreduce_main(ctx: DistContext) -> None:
    """Joins as many all-reduces of the size rank 0 announces as it announces (latency measurements)."""
    spec = torch.zeros(2, dtype=torch.int64)
    dist.broadcast(spec, src=0)
    x = torch.ones(int(spec[1]))
    for _ in range(int(spec[0])):
        dist.all_reduce(x)
