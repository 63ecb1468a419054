"""The server's own compile workers: every grammar the server builds from a request is built in a worker process.

Tool schemas (the turn grammar of ``tools`` / ``tool_choice``), structural tags and the tracking grammars
that turn parsers walk all come from what a client sent; converting them is CPU work of unbounded cost
(lark's pure-Python LALR analysis, the schema converter on a pathological schema). In the server's
interpreter it would hold the GIL the event loop needs (``/health`` and every stream froze for seconds in
issue 11), and a thread cannot be stopped at a deadline. So they run in a ``CompilePool`` over a 256-byte
vocabulary (no token masks are needed here: the engine compiles the real grammar in its own workers),
killed at the deadline and replaced, with the same size limits as the engine's compiles.
"""
from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any

from lightllm_struct.engine.compile_pool import CompilePool
from lightllm_struct.engine.compile_worker import WorkerInit
from lightllm_struct.engine.constraint_limits import ConstraintLimits
from lightllm_struct.engine.grammar_users import GrammarUsers, future_nbytes, release_memory
from lightllm_struct.grammar.cache import LRU
from lightllm_struct.request import Constraint

# Every byte a token, plus an end token: tracking grammars walk output bytes, never token masks.
BYTE_VOCAB: list[bytes] = [bytes([b]) for b in range(256)] + [b""]
BYTE_EOS = 256


class ServerCompiles:
    """Request-derived conversions and compiles of the HTTP server, in worker processes.

    Parameters
    ----------
    workers:
        Worker processes (each started on first use).
    timeout_s:
        Deadline of one conversion or compile (the engine's ``grammar_compile_timeout_s``).
    memory_mb:
        Address-space allowance of one worker beyond its set-up.
    limits:
        Size limits checked before any conversion work (the engine's ``grammar_max_*``).
    cache_size, cache_max_bytes:
        Tracking grammars kept (by grammar text), and their estimated bytes (``CompiledGrammar.nbytes``; None:
        no byte bound); least recently used ones that no turn parser walks go first.
    recycle_mb:
        A worker whose memory grew this much past its set-up is replaced after its job (None: never).
    """

    def __init__(self, *, workers: int = 2, timeout_s: float = 30.0, memory_mb: int | None = 4096,
                 limits: ConstraintLimits | None = None, cache_size: int = 64, cache_max_bytes: int | None = 64 << 20,
                 recycle_mb: int | None = 512) -> None:
        self.timeout_s, self.limits = timeout_s, limits or ConstraintLimits()
        self._memory_mb = memory_mb
        self._info: Any = None
        self._info_lock = threading.Lock()
        self.users = GrammarUsers()
        self._tracking: LRU[str, cf.Future] = LRU(cache_size, max_bytes=cache_max_bytes, size_of=future_nbytes,
                                                  in_use=self.users.in_use, on_evict=release_memory)
        self.pool = CompilePool(self._worker_init, self.tokenizer, workers=workers, recycle_mb=recycle_mb)
        self.stats = {"server_conversions_total": 0, "server_tracking_compiles_total": 0}

    def _worker_init(self) -> WorkerInit:
        return WorkerInit(vocab=BYTE_VOCAB, eos_token_ids=[BYTE_EOS], special_token_ids=[],
                          compiler_options={"compile_timeout_s": self.timeout_s}, mask_budget_s=self.timeout_s,
                          memory_mb=self._memory_mb, limits=self.limits, warm=False)

    def tokenizer(self) -> Any:
        """The byte vocabulary's ``TokenizerInfo`` that tracking grammars arrive attached to."""
        with self._info_lock:
            if self._info is None:
                from lightllm_struct.grammar import TokenizerInfo

                self._info = TokenizerInfo.from_vocab(BYTE_VOCAB, eos_token_ids=[BYTE_EOS])
            return self._info

    async def call(self, fn: Callable, *args: Any) -> Any:
        """``fn(*args)`` in a worker under the deadline (``fn`` importable by name, ``args`` picklable).

        Raises
        ------
        CompileTimeout
            Past the deadline (the worker was killed and replaced).
        CompileWorkerDied
            The worker ended without answering (its memory allowance, a crash).
        LightLLMStructError
            Whatever typed error ``fn`` raised.
        """
        self.stats["server_conversions_total"] += 1
        return await asyncio.wrap_future(self.pool.call(fn, *args, timeout_s=self.timeout_s))

    async def tracking_grammar(self, lark: str) -> Any:
        """The compiled grammar (byte vocabulary) of ``lark`` that a turn parser walks; cached by text.

        The caller registers what walks it (``users.add``): the cache keeps a grammar in use past its bounds.
        """
        future = self._tracking.get(lark)
        if future is None or (future.done() and future.exception() is not None):
            self.stats["server_tracking_compiles_total"] += 1
            future = self.pool.compile(Constraint("lark", lark), timeout_s=self.timeout_s)
            self._tracking.put(lark, future)
            # measured once compiled (in the pool's thread): the byte bound applies from then on
            future.add_done_callback(lambda _: self._tracking.refresh(lark))
        return await asyncio.wrap_future(future)

    def counters(self) -> dict[str, float]:
        """Conversions and tracking compiles started, and the pool's worker restarts (deadline kills, deaths)."""
        return {**self.stats, **{f"server_{k}": v for k, v in self.pool.stats.items()},
                "server_compile_workers_live": len(self.pool.worker_pids()),
                "server_tracking_cache_entries": len(self._tracking),
                "server_tracking_cache_bytes": self._tracking.nbytes,
                "server_tracking_cache_evictions_total": self._tracking.evictions}

    def worker_pids(self) -> list[int]:
        return self.pool.worker_pids()

    def shutdown(self) -> None:
        self.pool.shutdown()
