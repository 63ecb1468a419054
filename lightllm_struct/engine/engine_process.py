"""The engine core in its own process: scheduler, grammar manager and model runner, served over two pipes.

The HTTP server (``server/engine_client.py``) sends ``("add", Request)``, ``("abort", id)`` and
``("shutdown",)``; this loop answers ``("ready", info)`` or ``("failed", error)`` once at start, then per step
``("outputs", [(output delta, error)])`` (``output_delta.py``) and every ``STATS_INTERVAL_S`` ``("stats", dict)``. Errors cross
as :func:`portable_error` tuples, rebuilt with their class by :func:`rebuild_error`. The process ignores
SIGINT (a terminal's Ctrl-C reaches the whole group: the server stops it in order) and exits when its
server goes away (end of file on the pipe).
"""
from __future__ import annotations

import importlib
import logging
import signal
import sys
import time
from multiprocessing.connection import Connection

import torch

from lightllm_struct.engine.outbox import Outbox, OutboxClosed
from lightllm_struct.engine.output_delta import DeltaEncoder
from lightllm_struct.errors import EngineDeadError, LightLLMStructError

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 0.25
SLOW_STEP_S = 0.25  # a step this long is logged with its shape (a compile, a stall: TTFT outliers)
# How long a thread waiting for the GIL lets the holder run before asking for it: the outbox's thread sends
# a step's outputs within this of the step (Python's default, 5 ms, is several decode steps).
SWITCH_INTERVAL_S = 0.0005
_MAX_CONSECUTIVE_STEP_FAILURES = 3


def portable_error(exc: BaseException) -> tuple[str, str, str, dict]:
    """``(module, class, message, attributes)`` of ``exc``: picklable whatever its constructor takes."""
    if not isinstance(exc, LightLLMStructError):
        exc = EngineDeadError(f"{type(exc).__name__}: {exc}")
    attrs = {k: v for k, v in vars(exc).items() if isinstance(v, (str, int, float, bool, type(None)))}
    return type(exc).__module__, type(exc).__qualname__, str(exc), attrs


def rebuild_error(spec: tuple[str, str, str, dict]) -> LightLLMStructError:
    """The error :func:`portable_error` described, of its own class (a project class) or the base."""
    module, name, message, attrs = spec
    cls = LightLLMStructError
    if module.startswith("lightllm_struct."):
        found = getattr(importlib.import_module(module), name, None)
        if isinstance(found, type) and issubclass(found, LightLLMStructError):
            cls = found
    exc = cls.__new__(cls)  # its __init__ may want arguments the attributes already hold
    Exception.__init__(exc, message)
    exc.__dict__.update(attrs)
    exc.__dict__.setdefault("message", message)
    exc.__dict__.setdefault("param", None)
    return exc


def run_engine_process(config, requests: Connection, outputs: Connection, warmup: bool = True) -> None:
    """The engine process's main function (a ``multiprocessing`` target)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s engine: %(message)s")
    from lightllm_struct.engine.compile_watch import watch_compiles

    compiles = watch_compiles()  # before the engine: graph capture's compiles count too
    try:
        from lightllm_struct.engine.engine import Engine

        engine = Engine(config)
        if warmup:
            from lightllm_struct.engine.warmup import warm_up

            warm_up(engine)
        if compiles is not None:
            logger.info("%d Triton kernel variants compiled in %.1f s before ready", compiles.total,
                        compiles.seconds)
            compiles.armed = True  # from here on each compile is logged: the warm-up missed it
    except BaseException as exc:  # noqa: BLE001 -- the server reports it and exits
        logger.exception("the engine failed to start")
        outputs.send(("failed", portable_error(exc)))
        return
    outputs.send(("ready", {"model_dir": str(engine.tokenizer.model_dir), "max_model_len": engine.max_model_len}))
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    outbox = Outbox(outputs)
    try:
        with torch.inference_mode():
            _EngineLoop(engine, requests, outbox, compiles=compiles).run()
    except (EOFError, BrokenPipeError, ConnectionResetError, OutboxClosed):
        pass  # the server went away
    finally:
        outbox.close()
        engine.shutdown()


class _EngineLoop:
    def __init__(self, engine, requests: Connection, outputs: Outbox, *, compiles=None) -> None:
        self.engine, self.requests, self.outputs, self.compiles = engine, requests, outputs, compiles
        self.in_flight: set[str] = set()  # ids of the requests added and not yet finished
        self.deltas = DeltaEncoder()
        self.stopping = False
        self.last_stats = 0.0

    def run(self) -> None:
        failures = 0
        while not self.stopping:
            busy = self.engine.has_unfinished()
            if self.requests.poll(0 if busy else STATS_INTERVAL_S):
                self._receive()
            if self.engine.has_unfinished():
                try:
                    start = time.perf_counter()
                    done = self.engine.step()
                    failures = 0
                    if time.perf_counter() - start > SLOW_STEP_S:
                        self._log_slow_step(time.perf_counter() - start, done)
                except Exception as exc:  # noqa: BLE001 -- one bad step fails its requests, not the server
                    failures += 1
                    logger.exception("engine step failed (%d in a row)", failures)
                    self._fail_all(exc)
                    if failures >= _MAX_CONSECUTIVE_STEP_FAILURES:
                        raise
                    continue
                if done:
                    self.outputs.put(("outputs", [self._portable(out) for out in done]))
            now = time.monotonic()
            if now - self.last_stats >= STATS_INTERVAL_S:
                self.last_stats = now
                stats = dict(self.engine.stats(), kv_reclaimable_slots=self.engine.kv.num_reclaimable,
                             engine_messages_sent=self.outputs.num_sent, engine_messages_merged=self.outputs.num_merged,
                             **(self.compiles.stats if self.compiles is not None else {}))
                self.outputs.put(("stats", stats))

    def _log_slow_step(self, seconds: float, done: list) -> None:
        after = self.compiles.after_armed if self.compiles is not None else 0
        logger.warning("slow step: %.2f s, %d running, %d waiting, %d outputs (%d new first tokens); "
                       "Triton compiles after warm-up so far: %d %s", seconds, len(self.engine.scheduler.running),
                       len(self.engine.scheduler.waiting), len(done),
                       sum(1 for out in done if out.num_output_tokens == 1), after,
                       self.compiles.last[-3:] if after else "")

    def _receive(self) -> None:
        while self.requests.poll(0):
            kind, *args = self.requests.recv()
            if kind == "add":
                request = args[0]
                try:
                    self.engine.add_request(request)
                    self.in_flight.add(request.request_id)
                except Exception as exc:  # noqa: BLE001 -- a bad request fails alone
                    self.outputs.put(("error", request.request_id, portable_error(exc)))
            elif kind == "abort":
                self.engine.abort_request(args[0])
            elif kind == "shutdown":
                self.stopping = True

    def _portable(self, out) -> tuple:
        """``(the output as a delta, its exception as a portable tuple or None)``."""
        if out.finished:
            self.in_flight.discard(out.request_id)
        return self.deltas.encode(out), None if out.exception is None else portable_error(out.exception)

    def _fail_all(self, exc: Exception) -> None:
        from lightllm_struct.engine.async_engine import EngineStepError

        error = portable_error(EngineStepError(f"the engine failed: {type(exc).__name__}: {exc}"))
        for request_id in list(self.in_flight):
            self.engine.abort_request(request_id)
            self.outputs.put(("error", request_id, error))
        self.in_flight.clear()
