"""Starting the ranks: one spawned process per rank > 0 (rank 0 is the calling process), or torchrun.

In-process launch (the default, ``LLM(tensor_parallel_size=N)`` and ``--tp N``): rank 0 opens a TCP store on
127.0.0.1 at a free port, spawns ranks 1..N-1 with ``torch.multiprocessing``'s spawn context, and waits for
each to check in while watching that none died, so a rank that fails while starting (an import error, a
bad GPU) is reported at once instead of after the rendezvous timeout.

torchrun launch: every process runs the same entry point; ``Rendezvous.from_env()`` finds RANK/WORLD_SIZE/
MASTER_ADDR/MASTER_PORT, rank 0 becomes the engine and ranks > 0 call ``run_rank_from_env``.
"""
from __future__ import annotations

import contextlib
import datetime
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch.distributed as dist
import torch.multiprocessing as mp

from lightllm_struct.distributed.group import (
    DEFAULT_TIMEOUT_S,
    DistContext,
    DistributedInitError,
    Rendezvous,
    apply_rank_env,
    destroy_distributed,
    find_free_port,
    init_distributed,
    resolve_device,
)
from lightllm_struct.distributed.health import describe_exit, watch_parent

_ARRIVED = "llms/arrived"
# The body of a rank > 0 once its groups exist: a picklable top-level callable of an importable module
# (spawn pickles it by name; the user's __main__ is deliberately not re-run in the rank, see below).
RankMain = Callable[[DistContext], None]


@dataclass
class LaunchedRanks:
    """Rank 0's handle on the job it started: its own context and the processes of ranks 1..N-1."""

    ctx: DistContext
    procs: dict[int, mp.Process]

    def join(self, *, timeout_s: float = 10.0) -> None:
        """Wait for the ranks to exit (after a shutdown message), killing any that outstay ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self.procs.values():
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)

    def terminate(self) -> None:
        """Kill every rank process still running (after a failure: peers blocked in collectives then fail)."""
        _kill(self.procs)


def _kill(procs: dict[int, mp.Process]) -> None:
    for proc in procs.values():
        if proc.is_alive():
            proc.kill()


def launch_ranks(
    world_size: int,
    rank_main: RankMain,
    *,
    device: str = "auto",
    master_addr: str = "127.0.0.1",
    master_port: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    startup_timeout_s: float = 300.0,
) -> LaunchedRanks:
    """Spawn ranks 1..N-1 running ``rank_main`` and join the groups as rank 0 in this process.

    Raises
    ------
    DistributedInitError
        If a rank dies before the rendezvous, or not all arrive within ``startup_timeout_s``.
    """
    apply_rank_env(master_addr)
    port = master_port or find_free_port(master_addr)
    store = dist.TCPStore(master_addr, port, world_size, is_master=True, wait_for_workers=False,
                          timeout=datetime.timedelta(seconds=startup_timeout_s))
    spawn = mp.get_context("spawn")
    procs: dict[int, mp.Process] = {}
    for rank in range(1, world_size):
        rdv = Rendezvous(rank=rank, world_size=world_size, master_addr=master_addr, master_port=port)
        proc = spawn.Process(target=_rank_entry, args=(rdv, device, timeout_s, startup_timeout_s, rank_main),
                             name=f"lightllm-struct-tp{rank}", daemon=True)
        with _user_main_hidden():
            proc.start()
        procs[rank] = proc
    try:
        _await_arrivals(store, procs, startup_timeout_s)
        rdv0 = Rendezvous(rank=0, world_size=world_size, master_addr=master_addr, master_port=port)
        ctx = init_distributed(rdv0, device=device, timeout_s=timeout_s, store=store)
    except BaseException:
        _kill(procs)
        raise
    return LaunchedRanks(ctx=ctx, procs=procs)


@contextlib.contextmanager
def _user_main_hidden():
    """Start a spawned rank without re-running the user's ``__main__`` in it.

    spawn normally re-imports the parent's main script in the child; a rank needs nothing from it, and a
    script without an ``if __name__ == "__main__"`` guard would build its engine again there (and fail).
    The rank's target lives in this package, so an empty main module is all the child must see.
    """
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


def _await_arrivals(store: dist.Store, procs: dict[int, mp.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while store.add(_ARRIVED, 0) < len(procs):
        dead = [describe_exit(r, p) for r, p in procs.items() if not p.is_alive()]
        if dead:
            raise DistributedInitError("; ".join(dead) + " before joining the tensor-parallel group")
        if time.monotonic() > deadline:
            raise DistributedInitError(f"tensor-parallel ranks did not start within {timeout_s:.0f}s")
        time.sleep(0.05)


def _rank_entry(rdv: Rendezvous, device: str, timeout_s: float, startup_timeout_s: float,
                rank_main: RankMain) -> None:
    """Body of a spawned rank: join, run ``rank_main``, leave. Errors end the process with code 1."""
    watch_parent()
    apply_rank_env(rdv.master_addr)
    try:
        store = dist.TCPStore(rdv.master_addr, rdv.master_port, rdv.world_size, is_master=False,
                              timeout=datetime.timedelta(seconds=startup_timeout_s))
        resolve_device(device, rdv)  # a rank without its device must fail before it counts as arrived
        store.add(_ARRIVED, 1)
        ctx = init_distributed(rdv, device=device, timeout_s=timeout_s, store=store)
        rank_main(ctx)
    except BaseException:
        print(f"[lightllm-struct tensor-parallel rank {rdv.rank}] failed:\n{traceback.format_exc()}", flush=True)
        raise SystemExit(1) from None
    finally:
        destroy_distributed()


def run_rank_from_env(rank_main: RankMain, *, device: str = "auto",
                      timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Under torchrun: if this process is a rank > 0, run ``rank_main`` and return True; else False.

    Rank 0 returns False at once and builds its engine, which joins the same rendezvous (``join_from_env``).
    """
    rdv = Rendezvous.from_env()
    if rdv is None or rdv.rank == 0:
        return False
    ctx = init_distributed(rdv, device=device, timeout_s=timeout_s)
    try:
        rank_main(ctx)
    finally:
        destroy_distributed()
    return True


def join_from_env(*, device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext | None:
    """Rank 0 under torchrun: join the group the launcher described; None when not under a launcher."""
    rdv = Rendezvous.from_env()
    if rdv is None or rdv.world_size == 1:
        return None
    return init_distributed(rdv, device=device, timeout_s=timeout_s)
