"""A rank that dies is reported at once, with its pid and signal, and peers' collectives fail, not hang."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import torch
import torch.distributed as dist

from lightllm_struct.distributed.channel import Op
from lightllm_struct.distributed.group import DistributedInitError
from lightllm_struct.distributed.health import RankFailure, RankWatchdog
from lightllm_struct.distributed.launcher import launch_ranks
from lightllm_struct.distributed.worker import channel_for
from tests.distributed.ranks import idle_main


def test_killed_rank_is_reported_and_collectives_fail_fast(rank0_cleanup):
    job = launch_ranks(2, idle_main, device="cpu", timeout_s=60)
    fired = threading.Event()
    failures: list[RankFailure] = []
    watchdog = RankWatchdog(job.procs, on_failure=lambda f: (failures.append(f), fired.set())).start()
    channel_for(job.ctx).send(Op.SETUP, {"value": 0})  # the worker echoes setups: join its broadcast
    dist.broadcast_object_list([None], src=1)
    pid = job.procs[1].pid
    job.procs[1].kill()
    t0 = time.monotonic()
    assert fired.wait(10), "watchdog did not notice the dead rank"
    assert f"rank 1 (pid {pid}) was killed by SIGKILL" in failures[0].message
    assert failures[0].rank == 1 and failures[0].http_status == 500
    # A collective with the dead peer must error well within the 60 s collective timeout.
    with pytest.raises((RuntimeError, dist.DistError)):
        dist.all_reduce(torch.ones(4))
    assert time.monotonic() - t0 < 30
    watchdog.stop()


def test_hung_rank_turns_into_an_error_after_the_collective_timeout(rank0_cleanup):
    job = launch_ranks(2, idle_main, device="cpu", timeout_s=3)
    os.kill(job.procs[1].pid, signal.SIGSTOP)  # alive but unresponsive: no socket closes, only time tells
    try:
        t0 = time.monotonic()
        with pytest.raises((RuntimeError, dist.DistError)):
            dist.all_reduce(torch.ones(4))
        assert 2.5 < time.monotonic() - t0 < 30
    finally:
        job.terminate()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a rank that cannot get its device")
def test_rank_dying_at_start_is_reported(rank0_cleanup):
    t0 = time.monotonic()
    with pytest.raises(DistributedInitError, match=r"rank 1 \(pid \d+\) exited with code 1"):
        launch_ranks(2, idle_main, device="cuda", timeout_s=60, startup_timeout_s=60)
    assert time.monotonic() - t0 < 30
