"""The engine process's outbox: the step loop never waits on a slow reader; what piles up meanwhile goes out
merged, in order; a reader that went away is reported to the loop."""
from __future__ import annotations

import multiprocessing as mp
import time

import pytest

from lightllm_struct.engine.outbox import Outbox, OutboxClosed


def test_outputs_queued_behind_a_blocked_send_go_out_merged_and_in_order():
    receive, send = mp.Pipe(duplex=False)
    outbox = Outbox(send)
    outbox.put(("blob", b"x" * (4 << 20)))  # far over the pipe's buffer: the thread blocks until we read
    start = time.perf_counter()
    for step in range(5):
        outbox.put(("outputs", [(f"a{step}", None), (f"b{step}", None)]))
    outbox.put(("stats", {"n": 1}))
    outbox.put(("outputs", [("a5", None)]))
    assert time.perf_counter() - start < 1.0  # the loop went on while the send was stuck
    assert receive.recv()[0] == "blob"
    got = [receive.recv() for _ in range(3)]
    assert got[0] == ("outputs", [(f"{k}{step}", None) for step in range(5) for k in "ab"])
    assert got[1] == ("stats", {"n": 1}) and got[2] == ("outputs", [("a5", None)])
    outbox.close()  # joins the thread: it counts a message after its send returns, which can be after our recv
    assert outbox.num_merged == 4 and outbox.num_sent == 4


def test_a_closed_reader_is_reported_to_the_loop():
    receive, send = mp.Pipe(duplex=False)
    outbox = Outbox(send)
    receive.close()
    outbox.put(("outputs", [("a", None)]))
    deadline = time.monotonic() + 5
    with pytest.raises(OutboxClosed):
        while time.monotonic() < deadline:
            outbox.put(("outputs", [("a", None)]))
            time.sleep(0.01)
    outbox.close()


def test_close_sends_what_is_queued():
    receive, send = mp.Pipe(duplex=False)
    outbox = Outbox(send)
    for i in range(3):
        outbox.put(("error", f"r{i}", None))
    outbox.close()
    assert [receive.recv()[1] for _ in range(3)] == ["r0", "r1", "r2"]
