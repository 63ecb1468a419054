"""Step messages round-trip exactly from rank 0 to a spawned rank over gloo (no model involved)."""
from __future__ import annotations

import torch
import torch.distributed as dist

from lightllm_struct.distributed.channel import Op
from lightllm_struct.distributed.launcher import launch_ranks
from lightllm_struct.distributed.worker import channel_for
from tests.distributed.ranks import echo_main


def _described(tensors):
    return {name: (str(t.dtype), list(t.shape), t.float().tolist() if t.is_floating_point() else t.tolist())
            for name, t in tensors.items()}


def _echo():
    box = [None]
    dist.broadcast_object_list(box, src=1)
    return box[0]


def test_messages_round_trip_and_shutdown_ends_the_worker(rank0_cleanup):
    job = launch_ranks(2, echo_main, device="cpu", timeout_s=60)
    assert job.ctx.rank == 0 and job.ctx.world_size == 2 and job.ctx.backend == "gloo"
    channel = channel_for(job.ctx)
    base = torch.arange(24, dtype=torch.int64).reshape(4, 6)
    messages = [
        (Op.SETUP, {"num_slots": 128, "names": ["a", "b"]}, {"scale": torch.tensor(2.5)}),
        (Op.STEP, {"value": 3, "seq_lens_cpu": [5, 1, 1]}, {
            "input_ids": torch.tensor([1, 2, 3, 4, 5, 6, 7], dtype=torch.int64),
            "query_start_loc": torch.tensor([0, 5, 6, 7], dtype=torch.int32),
            "req_to_token": base[:, ::2],  # non-contiguous: must arrive as its values, not its storage
            "bitmask": torch.tensor([[-1, 0x5], [7, -2]], dtype=torch.int32),
            "mask_bool": torch.tensor([True, False, True]),
            "temperature": torch.tensor([0.0, 0.7, 1.0], dtype=torch.float32),
            "half": torch.tensor([1.5, -2.25], dtype=torch.bfloat16),
            "empty": torch.empty(0, 4, dtype=torch.int64),
        }),
        (Op.STEP, {"value": 1}, {}),  # a message with no tensors costs no data broadcast
        (Op.STEP, {"value": 2, "seq_lens_cpu": list(range(3000))}, {}),  # metadata beyond the header
    ]
    for op, meta, tensors in messages:
        channel.send(op, meta, tensors)
        if op is Op.STEP:
            x = torch.full((3,), float(meta["value"]))
            dist.all_reduce(x)
            assert x.tolist() == [2.0 * meta["value"]] * 3
        kind, got_meta, got = _echo()
        assert kind == ("setup" if op is Op.SETUP else "step")
        assert got_meta == meta
        assert got == _described(tensors)
    channel.send(Op.SHUTDOWN)
    assert _echo() == ("done", 3, 1)
    job.join(timeout_s=20)
    assert job.procs[1].exitcode == 0
