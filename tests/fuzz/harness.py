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
    seconds: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        s = sorted(self.seconds) or [0.0]
        return {"constraints": self.total, "grammars": self.grammars, "typed_errors": dict(self.codes.most_common()),
                "untyped": len(self.untyped), "late": len(self.late), "worker_deaths": self.worker_deaths,
                "p50_s": round(s[len(s) // 2], 4), "p99_s": round(s[int(len(s) * 0.99)], 4),
                "max_s": round(s[-1], 3)}


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
        started = [(name, c, time.monotonic(), pool.compile(c, timeout_s=deadline_s)) for name, c in chunk]
        for name, constraint, _, future in started:
            _record(out, name, constraint, future, deadline_s)


def _record(out: Outcome, name: str, constraint: Constraint, future, deadline_s: float) -> None:
    start = time.monotonic()
    try:
        future.result(timeout=deadline_s * 4 + 60)
        out.grammars += 1
    except LightLLMStructError as exc:
        if exc.message == UNTYPED:
            out.untyped.append(name)
        out.worker_deaths += isinstance(exc, CompileWorkerDied)
        out.codes[error_code(exc)] += 1
    out.total += 1
    # Wall time of the compile itself, as the engine sees it (queueing behind the batch excluded).
    wall = time.monotonic() - start
    out.seconds.append(wall)
    if wall > deadline_s + KILL_GRACE_S + 1.0:
        out.late.append((name, wall))
