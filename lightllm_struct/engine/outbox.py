"""The engine process's messages to the server, sent by a thread of their own so a step never waits on them.

``Connection.send`` blocks once the pipe is full, i.e. whenever the server's reader falls behind (its thread
shares a GIL with the event loop that writes every SSE chunk): the step loop would then run at the server's
pace. Here the loop only queues; consecutive ``outputs`` messages that pile up while a send is under way go
out as one (the deltas of a request stay in order, so the server rebuilds the same snapshots), so a slow
reader gets fewer, larger messages instead of stalling the engine.
"""
from __future__ import annotations

import threading
from multiprocessing.connection import Connection


class OutboxClosed(ConnectionError):
    """The server end of the pipe is gone (raised by :meth:`Outbox.put` once a send failed)."""


class Outbox:
    """A send queue on ``conn`` drained by a daemon thread; messages keep their order."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._queue: list[tuple] = []
        self._cv = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self.num_sent = 0  # messages that went out (after merging)
        self.num_merged = 0  # outputs messages folded into the one before them
        self._thread = threading.Thread(target=self._run, name="llms-engine-outbox", daemon=True)
        self._thread.start()

    def put(self, message: tuple) -> None:
        """Queue ``message``; raises :class:`OutboxClosed` if an earlier send found the pipe closed."""
        with self._cv:
            if self._error is not None:
                raise OutboxClosed(f"the server end of the pipe is gone: {self._error}") from self._error
            last = self._queue[-1] if self._queue else None
            if message[0] == "outputs" and last is not None and last[0] == "outputs":
                last[1].extend(message[1])  # the queued list is ours (put copies it): merge in place
                self.num_merged += 1
            else:
                self._queue.append((message[0], list(message[1]), *message[2:]) if message[0] == "outputs"
                                   else message)
            self._cv.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` seconds), then stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue:
                    return
                message = self._queue.pop(0)
            try:
                self._conn.send(message)
            except (OSError, ValueError) as exc:  # broken pipe, closed connection: the server went away
                with self._cv:
                    self._error, self._queue = exc, []
                return
            self.num_sent += 1
