"""Run constraints through the real compile pool and classify how each ended (shared by test and benchmark)."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from lightllm_struct.engine.compile_pool import KILL_GRACE_S, CompilePool
from lightllm_struct.engine.compile_worker import CompileWorkerDied
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.request import Constraint
from lightllm_struct.server.errors import error_code

# What a worker answers for an exception nobody typed: a bug to fix, never an acceptable ending.
UNTYPED = "grammar compilation failed (see the server log)"


@dataclass
class Outcome:
    total: int = 0
    grammars: int = 0
    codes: Counter = field(default_factory=Counter)
    untyped: list[str] = field(default_factory=list)
    late: list[tuple[str, float]] = field(default_factory=list)  # past deadline + grace
    worker_deaths: int = 0
    seconds: list[float] = field(default_factory=list)  # from a worker taking the job to its answer
    waits: list[float] = field(default_factory=list)  # queued: every worker busy or restarting

    def summary(self) -> dict:
        s = sorted(self.seconds) or [0.0]
        return {"constraints": self.total, "grammars": self.grammars, "typed_errors": dict(self.codes.most_common()),
                "untyped": len(self.untyped), "late": len(self.late), "worker_deaths": self.worker_deaths,
                "p50_s": round(s[len(s) // 2], 4), "p99_s": round(s[int(len(s) * 0.99)], 4),
                "max_s": round(s[-1], 3), **_waits(self.waits)}


def _waits(waits: list[float]) -> dict:
    w = sorted(waits) or [0.0]
    return {"queued_p50_s": round(w[len(w) // 2], 4), "queued_p99_s": round(w[int(len(w) * 0.99)], 4),
            "queued_max_s": round(w[-1], 3)}


def warm(pool: CompilePool) -> None:
    """Every worker started: a worker's start-up is not a compile's time."""
    for future in pool.prestart():
        future.result(timeout=600)


def run(pool: CompilePool, cases, *, deadline_s: float, batch: int = 8) -> Outcome:
    """Compile every (name, constraint) of ``cases``; ``batch`` in flight at a time (the pool queues them)."""
    out = Outcome()
    cases = iter(cases)
    while True:
        chunk = [next(cases, None) for _ in range(batch)]
        chunk = [c for c in chunk if c is not None]
        if not chunk:
            return out
        started = [(name, c, _stamped(pool.compile(c, timeout_s=deadline_s))) for name, c in chunk]
        for name, constraint, (submitted, future, answered) in started:
            _record(out, name, constraint, future, deadline_s, submitted=submitted, answered=answered)


def _stamped(future) -> tuple[float, object, list[float]]:
    """(submitted at, the future, [answered at] once it is done): stamped by the pool's thread as it answers."""
    answered: list[float] = []
    submitted = time.monotonic()
    future.add_done_callback(lambda _: answered.append(time.monotonic()))
    return submitted, future, answered


def _record(out: Outcome, name: str, constraint: Constraint, future, deadline_s: float, *, submitted: float,
            answered: list[float]) -> None:
    try:
        future.result(timeout=deadline_s * 4 + 60)
        out.grammars += 1
    except LightLLMStructError as exc:
        if exc.message == UNTYPED:
            out.untyped.append(name)
        out.worker_deaths += isinstance(exc, CompileWorkerDied)
        out.codes[error_code(exc)] += 1
    out.total += 1
    # The compile's own time: from a worker taking the job (the pool stamps it) to its answer. Waiting for a
    # worker (busy, or restarting after a kill: seconds on a loaded machine) is counted apart, as ``waits``.
    done = answered[0] if answered else time.monotonic()
    began = future.started_at if future.started_at is not None else submitted
    wall = done - began
    out.seconds.append(wall)
    out.waits.append(began - submitted)
    if wall > deadline_s + KILL_GRACE_S + 1.0:
        out.late.append((name, wall))
