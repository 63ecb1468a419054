"""A pool of compile worker processes, each killed at its job's deadline and replaced.

One thread per worker hands it a job, waits on its pipe up to the deadline (plus a grace for the worker's
own alarm to answer first), and on silence kills the process and starts another. Every job's future ends:
with the grammar, the worker's typed error, ``CompileTimeout``, or ``CompileWorkerDied``; never a hang.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import pickle
import queue
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from collections.abc import Callable
from typing import Any

from lightllm_struct.engine.compile_worker import (CompileWorkerDied, WorkerInit, load_grammar, unpack_error,
                                                   worker_main)
from lightllm_struct.grammar.errors import CompileTimeout, GrammarTooComplex

logger = logging.getLogger(__name__)

# The worker's own alarm answers at the deadline; the kill comes only if it cannot (stuck outside Python).
KILL_GRACE_S = 2.0
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
STARTUP_TIMEOUT_S = 300.0  # imports and vocabulary set-up on a loaded machine


class CompileFuture(cf.Future):
    """A job's future that also says when a worker began running it (None while queued): how long the compile
    itself took, apart from time spent waiting for a free or restarting worker."""

    started_at: float | None = None


class _Worker:
    """One worker process (``python -m lightllm_struct.engine.compile_worker``) and its end of a socket pair.

    A fresh interpreter rather than multiprocessing's spawn, which re-runs the parent's ``__main__`` (a user's
    script without a main guard would start an engine in every worker); never fork, which copies the engine's
    torch threads and held locks.
    """

    def __init__(self, init: WorkerInit) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen([sys.executable, "-m", "lightllm_struct.engine.compile_worker",
                                             str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                            stdin=subprocess.DEVNULL)
        self.conn = Connection(ours.detach())
        self.conn.send_bytes(pickle.dumps(init, protocol=pickle.HIGHEST_PROTOCOL))
        if not self.conn.poll(STARTUP_TIMEOUT_S):
            self.kill()
            raise CompileWorkerDied(f"a compile worker did not start within {STARTUP_TIMEOUT_S:g} s")
        try:
            pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError):
            self.kill()
            raise CompileWorkerDied(f"a compile worker died while starting (exit {self.exitcode})") from None
        self.setup_rss = self.rss()

    def rss(self) -> int:
        """Resident bytes of the process now (0 where /proc is not there to read it)."""
        try:
            with open(f"/proc/{self.process.pid}/statm") as f:
                return int(f.read().split()[1]) * _PAGE
        except (OSError, ValueError, IndexError):
            return 0

    @property
    def exitcode(self) -> int | None:
        return self.process.poll()

    def run(self, job: bytes, timeout_s: float) -> tuple[str, Any]:
        """Send the pickled ``job``; its reply, or ("timeout", None) if none came within ``timeout_s`` + grace."""
        self.conn.send_bytes(job)
        if not self.conn.poll(timeout_s + KILL_GRACE_S):
            return "timeout", None
        return pickle.loads(self.conn.recv_bytes())  # EOFError: it died

    def kill(self) -> None:
        self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            logger.error("compile worker %d did not exit after SIGKILL", self.process.pid)
        self.conn.close()


class CompilePool:
    """Compile constraints (and run conversion calls) in worker processes.

    Parameters
    ----------
    init:
        A callable returning the ``WorkerInit`` (the vocabulary is read once, in the background).
    tokenizer:
        A callable returning the engine-side ``TokenizerInfo`` that arriving grammars are attached to.
    workers:
        Number of worker processes.
    recycle_mb:
        A worker whose resident memory grew this many MB past its set-up is replaced after its job (None:
        never). What a large compile leaves (process-wide DFA and LR caches, heap the allocator keeps) is
        then given back at the cost of one start-up, instead of staying until the memory allowance.
    """

    def __init__(self, init: Callable[[], WorkerInit], tokenizer: Callable[[], Any], *, workers: int,
                 recycle_mb: int | None = None) -> None:
        self._recycle_bytes = None if recycle_mb is None else recycle_mb << 20
        self._init_fn, self._tokenizer_fn = init, tokenizer
        self._init: WorkerInit | None = None
        self._init_lock = threading.Lock()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = False
        self._live: set[_Worker] = set()
        self.stats = {"grammar_compile_worker_restarts_total": 0, "grammar_transfer_seconds_total": 0.0,
                      "grammar_compile_worker_recycles_total": 0}
        self._threads = [threading.Thread(target=self._serve, name=f"llms-compile-{i}", daemon=True)
                         for i in range(workers)]
        for t in self._threads:
            t.start()

    def compile(self, constraint: Any, *, timeout_s: float) -> cf.Future:
        """A future of the ``CompiledGrammar`` of ``constraint`` (or its typed error)."""
        return self._submit(("compile", constraint, timeout_s))

    def call(self, fn: Callable, *args: Any, timeout_s: float) -> cf.Future:
        """A future of ``fn(*args)`` run in a worker (``fn`` and ``args`` picklable, ``fn`` by reference)."""
        return self._submit(("call", fn, args, timeout_s))

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (benchmarks read their memory)."""
        return [w.process.pid for w in list(self._live) if w.exitcode is None]

    def prestart(self) -> list[cf.Future]:
        """Start every worker now (one no-op job each) rather than on the first compiles that need them."""
        return [self.call(len, (), timeout_s=STARTUP_TIMEOUT_S) for _ in self._threads]

    def shutdown(self) -> None:
        self._stopping = True
        for _ in self._threads:
            self._jobs.put(None)

    def _submit(self, job: tuple) -> CompileFuture:
        future = CompileFuture()
        self._jobs.put((job, future))
        return future

    def _worker_init(self) -> WorkerInit:
        with self._init_lock:
            if self._init is None:
                self._init = self._init_fn()
            return self._init

    def _serve(self) -> None:
        worker: _Worker | None = None
        while True:
            item = self._jobs.get()
            if item is None:
                if worker is not None:
                    worker.kill()
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            if worker is None:  # started on first use: an engine that never compiles never pays for it
                worker = self._start(future)
                if worker is None:
                    continue
            try:
                worker = self._run(worker, job, future)
            except Exception as exc:  # noqa: BLE001 -- this thread serves every later job: it must not end
                logger.error("compile job failed in the pool", exc_info=exc)
                if not future.done():
                    future.set_exception(CompileWorkerDied("the compile job could not be run"))
                worker.kill()
                worker = None
            if worker is None and not self._stopping:
                worker = self._start(None)  # the replacement starts now, not when the next job waits for it

    def _start(self, future: cf.Future | None) -> _Worker | None:
        try:
            worker = _Worker(self._worker_init())
            self._live.add(worker)
            return worker
        except Exception as exc:  # noqa: BLE001 -- the job learns why; the next one tries again
            logger.error("cannot start a compile worker", exc_info=exc)
            if future is not None:
                future.set_exception(exc if isinstance(exc, CompileWorkerDied) else
                                     CompileWorkerDied("no compile worker could be started"))
            return None

    def _run(self, worker: _Worker, job: tuple, future: cf.Future) -> _Worker | None:
        """Run ``job`` on ``worker``; returns the worker still usable, or None after killing it."""
        timeout_s = job[-1]
        try:
            data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
        except RecursionError:
            future.set_exception(GrammarTooComplex("the constraint nests too deeply to compile"))
            return worker
        future.started_at = time.monotonic()
        try:
            kind, payload, *restart = worker.run(data, timeout_s)
        except (EOFError, OSError):
            code = worker.exitcode
            self.stats["grammar_compile_worker_restarts_total"] += 1
            future.set_exception(CompileWorkerDied(
                f"the compile worker died (exit {code}) on this constraint: it may need more memory than "
                "grammar_compile_memory_mb allows"))
            worker.kill()
            return None
        if kind == "timeout":
            # the answer first: the kill waits for the process to exit, which can take seconds for a worker of
            # a gigabyte on a loaded machine (the 10,000-case fuzz run had 7 answers 0.5-1.4 s past the grace)
            self.stats["grammar_compile_worker_restarts_total"] += 1
            future.set_exception(CompileTimeout(f"grammar compilation exceeded its deadline of {timeout_s:g} s"))
            worker.kill()
            return None
        if kind == "error":
            future.set_exception(unpack_error(payload))
        elif kind == "grammar":
            try:
                tokenizer = self._tokenizer_fn()  # the engine's own vocabulary tables, built once
                start = time.perf_counter()
                future.set_result(load_grammar(payload, tokenizer))
                self.stats["grammar_transfer_seconds_total"] += time.perf_counter() - start
            except Exception as exc:  # noqa: BLE001 -- a grammar that cannot be attached fails its request
                logger.error("a compiled grammar could not be loaded", exc_info=exc)
                future.set_exception(CompileWorkerDied("the compiled grammar could not be loaded"))
        else:
            future.set_result(payload)
        if restart:  # an alarm interrupted the job: the worker's caches may be half made (compile_worker._Alarm)
            self.stats["grammar_compile_worker_restarts_total"] += 1
            worker.kill()
            return None
        if self._recycle_bytes is not None and worker.rss() - worker.setup_rss > self._recycle_bytes:
            self.stats["grammar_compile_worker_recycles_total"] += 1
            worker.kill()
            return None
        return worker
