"""The HTTP server's handle on an engine core running in its own process (``engine/engine_process.py``).

It keeps ``AsyncEngine``'s interface (``generate``, ``abort``, ``stats``, ``dead``, ``start``, ``shutdown``), so
the routes do not know where the engine runs: requests and aborts go down one pipe, and a reader thread turns
what comes up the other into each request's asyncio queue. Tokenizing, streaming and HTTP never share a GIL
with the step loop. A dead engine process ends every stream in flight with ``EngineDeadError`` and fails
new requests at once; ``dead`` makes ``/health`` answer 503.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing as mp
import sys
import threading
import time

from lightllm_struct.engine.async_engine import AsyncEngine
from lightllm_struct.engine.engine_process import rebuild_error, run_engine_process
from lightllm_struct.engine.output_delta import DeltaDecoder
from lightllm_struct.errors import EngineDeadError, LightLLMStructError
from lightllm_struct.request import Request

logger = logging.getLogger(__name__)

# The reader thread shares this process's GIL with the event loop that writes every SSE chunk: with Python's
# default switch interval (5 ms) it would get the GIL back after each pipe read only that much later.
SWITCH_INTERVAL_S = 0.0005


class EngineStartError(LightLLMStructError):
    """The engine process could not start (its own error says why)."""


class EngineClient(AsyncEngine):
    """Starts the engine process for ``config`` and serves it to asyncio callers.

    Parameters
    ----------
    config:
        The engine configuration (sent to the process).
    max_pending:
        Requests in flight beyond which ``generate`` raises ``EngineOverloadedError``.
    warmup:
        Run the start-up warm-up (``engine/warmup.py``) before the process reports ready.
    """

    def __init__(self, config, *, max_pending: int = 512, warmup: bool = True) -> None:
        super().__init__(None, max_pending=max_pending)
        ctx = mp.get_context("spawn")  # a fresh interpreter: no CUDA state or threads inherited
        requests_in, self._requests = ctx.Pipe(duplex=False)  # (receive end, send end)
        self._outputs, outputs_out = ctx.Pipe(duplex=False)
        # Not a daemon: the engine may start processes of its own (grammar compile workers).
        self.process = ctx.Process(target=run_engine_process, name="llms-engine",
                                   args=(config, requests_in, outputs_out, warmup))
        self._child_ends = (requests_in, outputs_out)
        self._send_lock = threading.Lock()
        self._stats: dict[str, float] = {"num_running": 0, "num_waiting": 0, "num_waiting_for_grammar": 0}
        self.info: dict = {}
        self._deltas = DeltaDecoder()
        self._thread = threading.Thread(target=self._read, name="llms-engine-reader", daemon=True)

    def start_process(self, *, timeout_s: float = 1800.0) -> dict:
        """Start the process and wait until its engine is built and warm; returns what it reported.

        Raises
        ------
        LightLLMStructError
            The engine's own error (model loading, configuration) if it failed to start.
        EngineStartError
            If it died or did not report within ``timeout_s``.
        """
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.process.start()
        atexit.register(self._stop_at_exit)  # runs before multiprocessing's own exit handler joins it
        for end in self._child_ends:
            end.close()  # the child's ends live in the child now: EOF here once it exits
        deadline = time.monotonic() + timeout_s
        while not self._outputs.poll(0.5):
            if not self.process.is_alive():
                raise EngineStartError(f"the engine process exited during start-up (code {self.process.exitcode})")
            if time.monotonic() > deadline:
                self.process.kill()
                raise EngineStartError(f"the engine process did not start within {timeout_s:g} s")
        try:
            kind, payload = self._outputs.recv()
        except EOFError:
            raise EngineStartError(f"the engine process exited during start-up (code {self.process.exitcode})")
        if kind == "failed":
            self.process.join(10)
            raise rebuild_error(payload)
        self.info = payload
        return payload

    # ------------------------------------------------------------ caller side
    def shutdown(self, timeout: float = 10.0) -> None:
        self._stopping = True
        self._send(("shutdown",))
        self.process.join(timeout)
        if self.process.is_alive():
            logger.warning("the engine process did not stop within %g s: terminating it", timeout)
            self.process.terminate()
            self.process.join(5)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _stop_at_exit(self) -> None:
        if self.process.is_alive():
            self.shutdown(timeout=5.0)

    def stats(self) -> dict[str, float]:
        """The engine process's last reported numbers plus the front's."""
        return dict(self._stats, num_in_flight=len(self._streams), engine_pid=self.process.pid or 0)

    def abort(self, request_id: str) -> None:
        self._send(("abort", request_id))

    def _submit(self, request: Request) -> None:
        if not self._send(("add", request)):
            raise EngineDeadError(f"the engine process has stopped: {self.dead}")

    def _send(self, message: tuple) -> bool:
        if self.dead is not None:
            return False
        try:
            with self._send_lock:
                self._requests.send(message)
            return True
        except (OSError, ValueError):  # the pipe is gone: the process died; the reader reports it
            return False

    # ------------------------------------------------------------ reader thread
    def _read(self) -> None:
        try:
            while True:
                kind, *args = self._outputs.recv()
                if kind == "outputs":
                    self._publish_outputs(args[0])
                elif kind == "error":
                    self._publish(args[0], rebuild_error(args[1]))
                elif kind == "stats":
                    self._stats = args[0]
        except (EOFError, OSError):
            pass
        self.process.join(1.0)
        if self._stopping and not self.process.is_alive() and self.process.exitcode == 0:
            return
        code = self.process.exitcode
        self.dead = EngineDeadError("the engine process exited" + (f" (code {code})" if code is not None else ""))
        logger.error("%s; failing the requests in flight", self.dead)
        with self._lock:
            ids = list(self._streams)
        for request_id in ids:
            self._publish(request_id, self.dead)


    def _publish_outputs(self, deltas: list[tuple]) -> None:
        """Rebuild a message's snapshots and hand each request its newest, one event-loop callback a loop.

        Snapshots are cumulative (the whole text and every token so far), so when a message carries several
        of one request (steps merged while the server was busy) only the last is worth a stream's time.
        """
        latest: dict[str, object] = {}
        for delta, error in deltas:
            out = self._deltas.decode(delta)
            latest[out.request_id] = out if error is None else _with_exception(out, rebuild_error(error))
        by_loop: dict = {}
        with self._lock:
            for request_id, out in latest.items():
                stream = self._streams.get(request_id)
                if stream is not None:  # else its caller already left
                    by_loop.setdefault(stream.loop, []).append((stream.queue, out))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:
                pass  # the caller's event loop is closed


def _deliver(items: list) -> None:
    for queue, item in items:
        queue.put_nowait(item)


def _with_exception(out, exc: BaseException):
    import dataclasses

    return dataclasses.replace(out, exception=exc)
