"""The loop of ranks > 0: receive each step's inputs from rank 0, run this rank's shard, repeat.

A worker never talks to the scheduler, the tokenizer or the grammar engine; everything it needs arrives in
the step message. What it does with a message is the handler's business (``tp_runner.ShardHandler`` runs the
model shard), which keeps this loop testable without a model.
"""
from __future__ import annotations

from typing import Protocol

from lightllm_struct.distributed.channel import Message, Op, StepChannel
from lightllm_struct.distributed.group import DistContext


class StepHandler(Protocol):
    """What a worker does with the messages of rank 0."""

    def setup(self, msg: Message) -> None:
        """Build per-run state (the KV cache once rank 0 has sized it)."""

    def step(self, msg: Message) -> None:
        """Run one step: join every collective that rank 0's step performs, in the same order."""

    def logits(self, msg: Message) -> None:
        """Join the LM head's gather for hidden rows rank 0 chose after the step."""


def channel_for(ctx: DistContext) -> StepChannel:
    """The step channel of a rank: header on the control group, tensors on the data group's device."""
    return StepChannel(rank=ctx.rank, control_group=ctx.control_group, data_group=ctx.tp.group, device=ctx.device)


def serve_steps(channel: StepChannel, handler: StepHandler) -> int:
    """Handle messages until rank 0 says SHUTDOWN; returns the number of steps run.

    An exception (a failed collective, a peer that died) propagates: the process then exits non-zero and
    rank 0's watchdog reports it.
    """
    steps = 0
    while True:
        msg = channel.recv()
        if msg.op is Op.SHUTDOWN:
            return steps
        if msg.op is Op.SETUP:
            handler.setup(msg)
        elif msg.op is Op.LOGITS:
            handler.logits(msg)
        else:
            handler.step(msg)
            steps += 1
