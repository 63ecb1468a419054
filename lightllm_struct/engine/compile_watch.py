"""Which Triton kernel variants compile, and when: after the warm-up, none should (a compile stalls the step
loop for a second or more, so it shows as a TTFT outlier of every request in that step).

``watch_compiles()`` installs Triton's JIT hooks once per process; each compile is counted, timed and, once
``CompileWatch.armed`` is set (the engine process sets it when its warm-up ends), logged as a warning with
the kernel's specialisation (argument types, constants, divisibility) so the warm-up can be made to cover it.
"""
from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger(__name__)


class CompileWatch:
    """Counts Triton compiles of this process (``total``, ``after_armed``) and their seconds."""

    def __init__(self) -> None:
        self.total = 0
        self.after_armed = 0
        self.seconds = 0.0
        self.armed = False
        self.last: list[str] = []  # the kernels compiled after arming, newest last (at most 32)
        self._started: dict[int, float] = {}
        self._lock = threading.Lock()

    def before(self, *args, **kwargs) -> bool:
        with self._lock:
            self._started[threading.get_ident()] = time.perf_counter()
        return False  # False: go on and compile

    def after(self, *args, **kwargs) -> None:
        with self._lock:
            spent = time.perf_counter() - self._started.pop(threading.get_ident(), time.perf_counter())
            self.total += 1
            self.seconds += spent
            if not self.armed:
                return
            self.after_armed += 1
            what = str(kwargs.get("repr") or kwargs.get("key") or "?")
            self.last = [*self.last[-31:], what]
        logger.warning("Triton compiled a kernel variant after the warm-up (%.2f s): %s", spent, what)

    @property
    def stats(self) -> dict[str, float]:
        return {"triton_compiles_total": self.total, "triton_compiles_after_warmup": self.after_armed,
                "triton_compile_seconds_total": self.seconds}


_WATCH: CompileWatch | None = None


def watch_compiles() -> CompileWatch | None:
    """The process's :class:`CompileWatch`, its hooks installed on first call; None without Triton hooks."""
    global _WATCH
    if _WATCH is not None:
        return _WATCH
    try:
        from triton import knobs
        runtime = knobs.runtime
    except (ImportError, AttributeError):  # no Triton, or one older than its knobs (3.4)
        return None
    watch = CompileWatch()
    if runtime.jit_cache_hook is not None or runtime.jit_post_compile_hook is not None:
        logger.info("Triton JIT hooks already set elsewhere: compiles are not watched")
        return None
    runtime.jit_cache_hook, runtime.jit_post_compile_hook = watch.before, watch.after
    _WATCH = watch
    return watch
