"""A cooperative compile deadline: long loops call ``check()`` so compilation can never hang."""
from __future__ import annotations

import time

from lightllm_struct.grammar.errors import CompileTimeout


class Deadline:
    """Raises :class:`CompileTimeout` from ``check()`` once ``timeout_s`` seconds have passed."""

    __slots__ = ("_end", "timeout_s")

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def check(self) -> None:
        if self._end is not None and time.monotonic() > self._end:
            raise CompileTimeout(f"grammar compilation exceeded its deadline of {self.timeout_s:g} s")


NO_DEADLINE = Deadline(None)
