"""Failure detection between ranks: a dead or hung rank becomes a clear error and a bounded exit, never a hang.

Three mechanisms cover the cases:

* rank 0 watches the worker processes it started (``RankWatchdog``): a death is noticed at once, even while
  the server is idle and no collective would fail;
* collectives of the data group have a timeout (``group.DEFAULT_TIMEOUT_S``): a hung rank turns into an
  exception on the others;
* a worker watches its parent (``watch_parent``): if rank 0's process disappears the worker exits instead
  of waiting forever in the control group.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess

from lightllm_struct.errors import EngineDeadError

log = logging.getLogger(__name__)


class RankFailure(EngineDeadError):
    """A tensor-parallel rank died or stopped answering; the engine cannot go on."""

    def __init__(self, message: str, *, rank: int | None = None) -> None:
        super().__init__(message)
        self.rank = rank


def reap(proc: BaseProcess, *, timeout_s: float = 2.0) -> None:
    """Wait until ``proc``'s exit code is known, for a process whose end was already seen.

    Two threads (the watchdog and a failed collective) may wait for one rank at once: the one whose
    ``waitpid`` loses the race sees no child and reports no exit code until the other has stored it.
    """
    deadline = time.monotonic() + timeout_s
    proc.join(timeout=timeout_s)
    while proc.exitcode is None and time.monotonic() < deadline:
        time.sleep(0.01)


def describe_exit(rank: int, proc: BaseProcess) -> str:
    """A one-line account of how a rank's process ended (``killed by SIGKILL``, ``exited with code 1``)."""
    code = proc.exitcode
    if code is None:
        how = "is still running"
    elif code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}"
    return f"tensor-parallel rank {rank} (pid {proc.pid}) {how}"


class RankWatchdog:
    """Calls ``on_failure`` once, from its own thread, when any watched rank process ends unexpectedly.

    Parameters
    ----------
    procs:
        Rank number -> process (ranks > 0, started by this process).
    on_failure:
        Receives a ``RankFailure`` naming the rank, its pid and its exit code or signal.
    """

    def __init__(self, procs: Mapping[int, BaseProcess], *, on_failure: Callable[[RankFailure], None]) -> None:
        self.procs = dict(procs)
        self.on_failure = on_failure
        self.failure: RankFailure | None = None
        self._stopping = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="tp-watchdog", daemon=True)

    def start(self) -> RankWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before an orderly shutdown, when ranks are expected to exit)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _run(self) -> None:
        by_sentinel = {p.sentinel: rank for rank, p in self.procs.items()}
        ready = multiprocessing.connection.wait([*by_sentinel, self._wake_r])
        if self._stopping.is_set():
            return
        rank = next(by_sentinel[s] for s in ready if s in by_sentinel)
        proc = self.procs[rank]
        reap(proc)
        self.failure = RankFailure(f"{describe_exit(rank, proc)}; the engine cannot continue", rank=rank)
        log.critical("%s", self.failure.message)
        try:
            self.on_failure(self.failure)
        except Exception:  # the watchdog must outlive a faulty callback; the failure is already logged
            log.exception("tensor-parallel failure handler raised")


def watch_parent(*, exit_code: int = 1) -> threading.Thread | None:
    """In a spawned rank: exit this process when the parent (rank 0) disappears. None outside a child."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return None

    def run() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        print(f"[lightllm-struct rank pid {os.getpid()}] rank 0 (pid {parent.pid}) is gone; exiting",
              file=sys.stderr, flush=True)
        os._exit(exit_code)

    thread = threading.Thread(target=run, name="tp-parent-watch", daemon=True)
    thread.start()
    return thread


def exit_process(message: str, *, grace_s: float = 10.0, exit_code: int = 1) -> None:
    """End this process with ``exit_code``: SIGTERM to itself first (a server shuts down gracefully), and a
    hard exit if it is still alive after ``grace_s`` (a thread stuck in a collective cannot be interrupted)."""
    print(f"lightllm-struct: fatal: {message}", file=sys.stderr, flush=True)

    def end(why: str) -> None:
        print(f"lightllm-struct: exiting ({why}) after: {message}", file=sys.stderr, flush=True)
        os._exit(exit_code)

    def after_main() -> None:
        # A graceful shutdown would otherwise end with status 0: the failure must show in the exit code.
        threading.main_thread().join()
        end("shut down")

    timer = threading.Timer(grace_s, end, args=(f"still alive {grace_s:.0f}s after the failure",))
    timer.daemon = True
    timer.start()
    threading.Thread(target=after_main, name="tp-exit", daemon=True).start()
    os.kill(os.getpid(), signal.SIGTERM)
