"""A cooperative compile deadline: long loops call ``check()`` so compilation can never hang."""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

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

# The deadline of the compilation running in this thread (or task), for stages that its caller cannot hand
# one to: the JSON-schema frontend's grammar check runs inside the frontend, before the compiler's own steps.
_CURRENT: ContextVar[Deadline] = ContextVar("grammar_compile_deadline", default=NO_DEADLINE)


@contextlib.contextmanager
def compiling_within(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the current compilation's (see ``current_deadline``) inside the block."""
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def current_deadline() -> Deadline:
    """The deadline of the compilation this code runs in; ``NO_DEADLINE`` outside one."""
    return _CURRENT.get()
