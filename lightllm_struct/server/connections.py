"""Connection limits uvicorn lacks: a header-read timeout, a body idle timeout and a hard connection cap.

uvicorn's ``timeout_keep_alive`` only runs between requests and is cancelled by any byte, and its
``limit_concurrency`` answers 503 only once a request head has arrived: a slowloris client (sockets that
send a header byte now and then) holds every connection it opens, and at fd exhaustion the accept loop logs
an error per attempt (125 MB of log in 20 s in issue 11). This protocol (uvicorn's ``H11Protocol``, which
it picks when httptools is absent) closes a connection whose request head is not complete within
``header_timeout_s``, or whose request body stops arriving for ``idle_timeout_s``; beyond
``max_connections`` it answers a fixed 503 and closes at once, before any parsing, so the fd is held for
microseconds. Closures are counted and logged at most once per ``LOG_EVERY_S``, never once per connection.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from lightllm_struct.config import ConfigError

logger = logging.getLogger(__name__)

LOG_EVERY_S = 10.0
_REFUSAL_BODY = (b'{"error": {"message": "too many open connections; retry later", "type": "server_overloaded", '
                 b'"param": null, "code": "server_overloaded"}}')
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(_REFUSAL_BODY)) + _REFUSAL_BODY


class ConnectionCounters:
    """What the guards did (the server's /health and tests read them)."""

    def __init__(self) -> None:
        self.counts = {"connections_refused_total": 0, "connections_header_timeout_total": 0,
                       "connections_idle_timeout_total": 0}
        self._logged_at = 0.0

    def add(self, what: str) -> None:
        self.counts[what] += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            logger.warning("connection guards so far: %s", self.counts)


class GuardedH11Protocol(H11Protocol):
    """``H11Protocol`` with the guards; configured by :func:`guarded_protocol` (class attributes)."""

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_connections: int | None = None
    counters: ConnectionCounters = ConnectionCounters()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refused = self.max_connections is not None and len(self.connections) >= self.max_connections
        if self._refused:
            self.counters.add("connections_refused_total")
            transport.write(_REFUSAL)
            transport.close()
            return
        super().connection_made(transport)
        self._last_data = self.loop.time()
        self._head_by = self._last_data + self.header_timeout_s
        self._guard = self.loop.call_later(self.header_timeout_s, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._guard.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._last_data = self.loop.time()
        super().data_received(data)

    def on_response_complete(self) -> None:
        # the next head may wait out the keep-alive time (uvicorn's own timer closes a silent connection),
        # then must be complete within the header timeout: trickled bytes cancel uvicorn's timer, not this
        self._head_by = self.loop.time() + self.timeout_keep_alive + self.header_timeout_s
        super().on_response_complete()

    def _check(self) -> None:
        if self.transport.is_closing():
            return
        now, state = self.loop.time(), self.conn.their_state
        if state is h11.IDLE:  # no complete request head in this cycle yet
            if now >= self._head_by:
                self._close("connections_header_timeout_total")
                return
            wait = self._head_by - now
        elif state is h11.SEND_BODY:  # the head came; the body is arriving
            idle = now - self._last_data
            if idle >= self.idle_timeout_s:
                self._close("connections_idle_timeout_total")
                return
            wait = self.idle_timeout_s - idle
        else:  # the request is in: the app answers (or streams) at its own pace
            wait = self.idle_timeout_s
        self._guard = self.loop.call_later(wait, self._check)

    def _close(self, what: str) -> None:
        self.counters.add(what)
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
        self.transport.close()


def guarded_protocol(*, header_timeout_s: float, idle_timeout_s: float,
                     max_connections: int | None) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` class with these limits, for ``uvicorn.run(http=...)``.

    Raises
    ------
    ConfigError
        A timeout that is not positive, or a cap below 1.
    """
    if header_timeout_s <= 0 or idle_timeout_s <= 0:
        raise ConfigError("connection timeouts must be positive", param="header_timeout_s")
    if max_connections is not None and max_connections < 1:
        raise ConfigError("the connection cap must be at least 1", param="max_connections")
    attrs: dict[str, Any] = {"header_timeout_s": header_timeout_s, "idle_timeout_s": idle_timeout_s,
                             "max_connections": max_connections, "counters": ConnectionCounters()}
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attrs)


def raise_open_file_limit(max_connections: int | None, *, spare: int = 256) -> None:
    """Raise the soft open-file limit toward the hard one so ``max_connections`` (plus ``spare`` fds for the
    engine, its workers' pipes and files) fits; warn when it cannot."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = (max_connections or 0) + spare
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < want:
        logger.warning("the open-file limit (%d) is below --max-connections plus %d spare: lower the cap", soft,
                       spare)
