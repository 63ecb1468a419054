"""Run the single-threaded ``Engine`` step loop in a background thread and serve it to asyncio callers.

The engine thread owns the engine: nothing else calls into it. Callers hand requests and aborts over
through thread-safe queues; outputs flow back through one ``asyncio.Queue`` per request, filled with
``loop.call_soon_threadsafe``. A caller that goes away (client disconnect, cancellation) aborts its request,
which frees its KV slots in the engine thread at the next step boundary. An exception escaping a step fails
the requests in flight, not the server; only repeated failures in a row mark the engine dead.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import torch

from lightllm_struct.errors import EngineDeadError, EngineOverloadedError, LightLLMStructError
from lightllm_struct.request import Request, RequestOutput

logger = logging.getLogger(__name__)

_MAX_CONSECUTIVE_STEP_FAILURES = 3


class EngineStepError(LightLLMStructError):
    """The engine failed while running this request (the server keeps serving others)."""

    http_status = 500
    error_type = "internal_error"


@dataclass
class _Stream:
    request: Request
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue


class AsyncEngine:
    """Thread-safe asyncio front of an ``Engine``.

    Parameters
    ----------
    engine:
        The engine; from ``start()`` on, only the background thread touches it.
    max_pending:
        Requests in flight (queued or running) beyond which ``generate`` raises ``EngineOverloadedError``.
    """

    def __init__(self, engine, *, max_pending: int = 512) -> None:
        self.engine = engine
        self.max_pending = max_pending
        self._inbox: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._aborts: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.dead: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llms-engine-loop", daemon=True)

    # ------------------------------------------------------------ caller side (any thread / event loop)
    def start(self) -> AsyncEngine:
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        close = getattr(self.engine, "shutdown", None)
        if close is not None:
            close()

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or self._stopping

    @property
    def num_in_flight(self) -> int:
        return len(self._streams)

    def stats(self) -> dict[str, float]:
        """The engine's numbers plus the front's (read from any thread; approximate by design)."""
        stats = dict(self.engine.stats())
        kv = self.engine.kv
        stats.update(num_in_flight=len(self._streams), kv_reclaimable_slots=kv.num_reclaimable)
        return stats

    def offload(self, fn: Any, *args: Any) -> Any:
        """A ``concurrent.futures.Future`` of ``fn(*args)`` run where grammars compile (a worker process)."""
        return self.engine.grammar.offload(fn, *args)

    def abort(self, request_id: str) -> None:
        self._aborts.put(request_id)
        self._wake.set()

    async def generate(self, request: Request) -> AsyncIterator[RequestOutput]:
        """Submit ``request`` and yield its outputs until it finishes.

        Snapshots that pile up while the caller is busy are coalesced: each output carries the whole text
        so far, so only the newest matters. Leaving the iteration early aborts the request.

        Raises
        ------
        EngineOverloadedError
            Too many requests are in flight.
        EngineDeadError
            The engine loop has died.
        LightLLMStructError
            The request failed in the engine (its own typed error, e.g. a grammar that does not compile).
        """
        if self.dead is not None:
            raise EngineDeadError(f"the engine loop has stopped: {self.dead}")
        stream = _Stream(request, asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if len(self._streams) >= self.max_pending:
                raise EngineOverloadedError(
                    f"the server is busy ({len(self._streams)} requests in flight); retry later")
            self._streams[request.request_id] = stream
        self._submit(request)
        finished = False
        try:
            while not finished:
                item = await stream.queue.get()
                while not stream.queue.empty() and not _is_final(item):
                    item = stream.queue.get_nowait()
                if isinstance(item, BaseException):
                    raise item
                finished = item.finished
                if finished and item.finish_reason == "error":
                    raise _request_error(item)
                yield item
        finally:
            if not finished:
                self.abort(request.request_id)
            with self._lock:
                self._streams.pop(request.request_id, None)

    def _submit(self, request: Request) -> None:
        self._inbox.put(request)
        self._wake.set()

    # ------------------------------------------------------------ engine thread
    def _run(self) -> None:
        # Inference mode is thread-local: the model's outputs are inference tensors, and the step updates
        # them (and the KV cache) in place, which torch allows only inside inference mode.
        with torch.inference_mode():
            self._loop()

    def _loop(self) -> None:
        failures = 0
        while not self._stopping:
            self._admit()
            self._apply_aborts()
            if not self.engine.has_unfinished():
                self._wake.wait(timeout=0.5)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
                failures = 0
            except Exception as exc:  # noqa: BLE001 -- one bad step must not end the loop
                failures += 1
                logger.exception("engine step failed (%d in a row)", failures)
                self._fail_all(exc)
                if failures >= _MAX_CONSECUTIVE_STEP_FAILURES:
                    self.dead = exc
                    return
                continue
            for out in outputs:
                self._publish(out.request_id, out)

    def _admit(self) -> None:
        while True:
            try:
                request = self._inbox.get_nowait()
            except queue.Empty:
                return
            try:
                self.engine.add_request(request)
            except Exception as exc:  # noqa: BLE001 -- a bad request fails alone
                self._publish(request.request_id, exc)

    def _apply_aborts(self) -> None:
        while True:
            try:
                request_id = self._aborts.get_nowait()
            except queue.Empty:
                return
            try:
                self.engine.abort_request(request_id)
            except Exception:  # noqa: BLE001 -- already finished or never admitted: nothing to free
                logger.debug("abort of %s had nothing to do", request_id, exc_info=True)

    def _fail_all(self, exc: Exception) -> None:
        with self._lock:
            ids = list(self._streams)
        for request_id in ids:
            try:
                self.engine.abort_request(request_id)
            except Exception:  # noqa: BLE001 -- the engine is already broken: every caller still gets its error
                logger.debug("abort after failed step", exc_info=True)
            self._publish(request_id, EngineStepError(f"the engine failed: {type(exc).__name__}: {exc}"))

    def _publish(self, request_id: str, item: RequestOutput | BaseException) -> None:
        with self._lock:
            stream = self._streams.get(request_id)
        if stream is None:
            return  # its caller already left
        try:
            stream.loop.call_soon_threadsafe(stream.queue.put_nowait, item)
        except RuntimeError:
            pass  # the caller's event loop is closed


def _is_final(item: RequestOutput | BaseException) -> bool:
    return isinstance(item, BaseException) or item.finished


def _request_error(out: RequestOutput) -> LightLLMStructError:
    """The typed error the engine recorded for the request, or a generic one from the output's text."""
    if isinstance(out.exception, LightLLMStructError):
        return out.exception
    return EngineStepError(out.error or "the request failed in the engine")
