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


def _exit_with_3():
    os._exit(3)


def test_two_threads_reaping_one_rank_both_learn_how_it_ended():
    """The watchdog and a failed collective wait for the same dead rank: whichever loses the waitpid race
    must still report the exit code (it once said "is still running" for a killed rank)."""
    import multiprocessing

    from lightllm_struct.distributed.health import describe_exit, reap

    for _ in range(3):
        proc = multiprocessing.get_context("spawn").Process(target=_exit_with_3)
        proc.start()
        seen: list[str] = []
        threads = [threading.Thread(target=lambda: (reap(proc, timeout_s=30), seen.append(describe_exit(1, proc))))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == [f"tensor-parallel rank 1 (pid {proc.pid}) exited with code 3"] * 2
