"""The engine's grammar hook: compile constraints off the step loop, fill the batch bitmask, advance matchers.

Compiles run in worker processes (``CompilePool``: killed at their deadline, never holding the engine's
GIL) with an LRU cache keyed by the canonical constraint (sorted-keys JSON) and the tokenizer, so the batch
never stalls on a new schema; the request waits in WAITING_FOR_GRAMMAR meanwhile. A compile that fails or
overruns its deadline fails that request alone, with the compiler's typed error.
"""
from __future__ import annotations

import concurrent.futures as cf
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from lightllm_struct.engine.budget import budget_for_mask, check_budget
from lightllm_struct.engine.matcher_like import MatcherLike, SampledTokenRejected
from lightllm_struct.engine.compile_pool import CompilePool
from lightllm_struct.engine.compile_worker import WorkerInit
from lightllm_struct.engine.constraint_limits import ConstraintLimits
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.engine.step_guard import fail_request
from lightllm_struct.grammar.batch_fill import BatchMaskFiller
from lightllm_struct.engine.grammar_users import GrammarUsers, future_nbytes, release_memory
from lightllm_struct.grammar.cache import LRU
from lightllm_struct.grammar.errors import (CompileTimeout, EmptyLanguageError, GrammarError, GrammarTooComplex,
                                            InvalidTokenError)
from lightllm_struct.request import CONSTRAINT_KINDS, Constraint, RequestStatus

logger = logging.getLogger(__name__)
_REMEASURE_POLLS = 256  # steps between re-measures of the cached grammars' bytes (a walk of their lexers)

# Constraint kind -> how the grammar compiler compiles it; one entry a CONSTRAINT_KINDS member.
_COMPILE: dict[str, Callable[[Any, Constraint], Any]] = {
    "json_schema": lambda compiler, c: compiler.compile_json_schema(c.spec, **c.options),
    "json_object": lambda compiler, c: compiler.compile_json_object(**c.options),
    "regex": lambda compiler, c: compiler.compile_regex(c.spec, **c.options),
    "lark": lambda compiler, c: compiler.compile_lark(c.spec, **c.options),
    "choice": lambda compiler, c: compiler.compile_choice(list(c.spec), **c.options),
}
assert set(_COMPILE) == set(CONSTRAINT_KINDS)


def compile_constraint(compiler: Any, c: Constraint) -> Any:
    """Run the grammar compiler for ``c``."""
    return _COMPILE[c.kind](compiler, c)


def compile_and_warm(compiler: Any, c: Constraint) -> Any:
    """Compile ``c`` and build the tables its first steps need, off the step loop (in a compile worker)."""
    grammar = compile_constraint(compiler, c)
    budget = getattr(grammar, "budget_masks", None)  # the shortest-finish tables of budget-aware masks
    if budget is not None:
        budget.values(grammar.initial_config())  # and the first steps' token scans (kept with the grammar)
    warm = getattr(grammar, "min_output_tokens", None)
    # No shortest sentence means no sentence at all.
    if warm is not None and warm() < 0:
        raise EmptyLanguageError(f"the {c.kind} constraint admits no finite output: no answer could ever "
                                 "satisfy it")
    return grammar


class GrammarManager:
    """Compiles constraints asynchronously and applies them to batches.

    Parameters
    ----------
    tokenizer:
        The engine's :class:`~lightllm_struct.engine.tokenizer.Tokenizer` (its vocabulary and EOS ids).
    vocab_size:
        Width of the model's logits; the bitmask covers ``ceil(vocab_size / 32)`` words.
    threads, timeout_s, cache_size:
        Compile worker processes, each compile's deadline and the number of compiled grammars kept.
    cache_max_bytes:
        Bytes of compiled grammars kept (``CompiledGrammar.nbytes``, re-measured as their masks fill; None:
        no byte bound): least recently used grammars that no request uses go first (``grammar_cache_max_mb``).
    recycle_mb:
        A compile worker whose memory grew this much past its set-up is replaced after its job (None: never).
    memory_mb:
        Address space a compile worker may add to its set-up (MemoryError, a typed 413, beyond).
    limits:
        Size limits checked in the worker before any compile work (``ConstraintLimits``; defaults if None).
    mask_budget_s:
        Longest one request's token mask may take in a step; a request over it is finished with
        ``GrammarTooComplex`` so that it cannot stall the batch token after token.
    compiler, matcher_cls:
        A ready ``GrammarCompiler`` and the matcher class for its grammars (tests), run in threads of this
        process; by default the grammar engine's, compiled in worker processes.
    pin_memory:
        Keep the batch bitmask in page-locked memory, so its copy to the GPU does not block the host.
    max_model_len:
        The model's context: with ``max_tokens``, it bounds each request's budget (``engine/budget.py``).
    """

    def __init__(self, tokenizer: Any, *, vocab_size: int, threads: int = 2, timeout_s: float = 30.0,
                 cache_size: int = 128, compiler: Any = None,
                 matcher_cls: Callable[[Any], MatcherLike] | None = None, pin_memory: bool = False,
                 mask_budget_s: float = 1.0, max_model_len: int | None = None,
                 memory_mb: int | None = 4096, limits: ConstraintLimits | None = None,
                 cache_max_bytes: int | None = 256 << 20, recycle_mb: int | None = 512) -> None:
        self.tokenizer, self.vocab_size, self.timeout_s = tokenizer, vocab_size, timeout_s
        self.max_model_len = max_model_len
        self.mask_budget_s, self.memory_mb = mask_budget_s, memory_mb
        self.limits = limits or ConstraintLimits()
        self._filler = BatchMaskFiller((vocab_size + 31) // 32, pin_memory=pin_memory)
        self.cache_size = cache_size
        self._compiler, self._compiler_lock = compiler, threading.Lock()
        self._matcher_cls = matcher_cls
        self._n_workers = threads
        self._workers = CompilePool(self._worker_init, lambda: self._get_compiler().tokenizer,
                                    workers=threads, recycle_mb=recycle_mb) if compiler is None else None
        self._pool = cf.ThreadPoolExecutor(threads, thread_name_prefix="llms-grammar") if compiler else None
        self._users = GrammarUsers()
        self._cache: LRU[str, cf.Future] = LRU(cache_size, max_bytes=cache_max_bytes, size_of=future_nbytes,
                                               in_use=self._in_use, on_evict=release_memory)
        self._polls = 0
        self._pending: dict[str, tuple[Sequence, cf.Future, float]] = {}
        self._stats = {"grammar_compiles_total": 0, "grammar_cache_hits_total": 0,
                      "grammar_compile_seconds_total": 0.0}

    @property
    def stats(self) -> dict[str, float]:
        # cache entries: load tests check the cache returns to its size once hostile requests stop
        return {**self._stats, "grammar_cache_entries": len(self._cache), "grammar_cache_bytes": self._cache.nbytes,
                "grammar_cache_evictions_total": self._cache.evictions,
                **(self._workers.stats if self._workers is not None else {})}

    @property
    def num_pending(self) -> int:
        return len(self._pending)

    def submit(self, seq: Sequence) -> bool:
        """Start compiling ``seq``'s constraint and place ``seq``: True (WAITING) if the grammar is ready at once
        (cached), else False (WAITING_FOR_GRAMMAR until :meth:`poll` reports it)."""
        future = self._cache.get(self._key(seq.req.constraint))
        if future is not None:
            self._stats["grammar_cache_hits_total"] += 1
        else:
            key = self._key(seq.req.constraint)
            future = self._start_compile(seq.req.constraint)
            self._cache.put(key, future)
            # measured once compiled (in the pool's thread): the byte bound applies from then on
            future.add_done_callback(lambda _: self._cache.refresh(key))
        if future.done() and future.exception() is None and self._fits(seq, future.result()):
            self._attach(seq, future.result())
            seq.place(RequestStatus.WAITING)
            return True
        seq.place(RequestStatus.WAITING_FOR_GRAMMAR)
        # Worker compiles end by themselves (the pool kills at the deadline); threads cannot be stopped.
        deadline = time.monotonic() + self.timeout_s if self._workers is None else float("inf")
        self._pending[seq.request_id] = (seq, future, deadline)
        return False

    def poll(self) -> tuple[list[Sequence], list[tuple[Sequence, LightLLMStructError]]]:
        """Requests whose grammar is now ready, and those whose compile failed (with the error)."""
        self._polls += 1
        if self._polls % _REMEASURE_POLLS == 0:
            self.remeasure_cache()
        ready, failed, now = [], [], time.monotonic()
        for rid, (seq, future, deadline) in list(self._pending.items()):
            if future.done():
                del self._pending[rid]
                exc = future.exception()
                if exc is None:
                    try:
                        check_budget(seq, future.result(), self.max_model_len)
                    except LightLLMStructError as error:
                        failed.append((seq, error))
                        continue
                    self._attach(seq, future.result())
                    seq.transition(RequestStatus.WAITING)
                    ready.append(seq)
                    self._cache.refresh(self._key(seq.req.constraint))  # measured now, if its callback has not yet
                else:
                    self._forget(seq.req.constraint, future)
                    failed.append((seq, _as_typed(exc)))
            elif now > deadline:
                del self._pending[rid]
                failed.append((seq, CompileTimeout(f"grammar compilation exceeded {self.timeout_s:g} s")))
        return ready, failed

    def remeasure_cache(self) -> int:
        """Measure the cached grammars again (they grow as their masks fill) and evict beyond the byte bound
        those no request uses; the bytes evicted. ``poll`` calls it every few hundred steps."""
        return self._cache.refresh()

    def wait(self, timeout: float) -> None:
        """Block up to ``timeout`` seconds for any pending compile to finish (when nothing else can run)."""
        futures = [f for _, f, _ in self._pending.values()]
        if futures:
            cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)

    def abort(self, request_id: str) -> Sequence | None:
        """Stop waiting for ``request_id``'s grammar; returns its sequence if it was waiting."""
        entry = self._pending.pop(request_id, None)
        return entry[0] if entry else None

    def fill_bitmask(self, seqs: list[Sequence]) -> torch.Tensor | None:
        """The int32 ``[len(seqs), ceil(V/32)]`` mask of this step's sampling rows; None if none is constrained.

        Free rows stay all ones, so constrained and free requests share one batched sampling call. The
        tensor is a view of one buffer reused every step (a pinned buffer is registered once; the filler
        remembers what each row holds, so a row whose mask did not change is not rewritten): use it before
        the next call and never write it.
        """
        if not any(s.matcher is not None for s in seqs):
            return None
        # Rows of one grammar in one state share one mask: computed once, copied once (``grammar/batch_fill.py``).
        budgets = [None if s.matcher is None else budget_for_mask(s, self.max_model_len)
                   for s in seqs]
        fill = self._filler.fill([s.matcher for s in seqs], budgets, slow_s=self.mask_budget_s)
        for i, exc in fill.failed:  # that row allows every token; its token is discarded as the request ends
            if isinstance(exc, CompileTimeout):  # the fill's budget interrupted the mask
                exc = self._over_budget("over the per-step budget")
            fail_request(seqs[i], exc, "computing its grammar mask")
        for i, spent in fill.slow:
            # The step waited this long once; finishing the request keeps it from doing so every token.
            fail_request(seqs[i], self._over_budget(f"{spent:.2f} s to compute, over the per-step budget"), "masking")
        return fill.rows

    def _over_budget(self, took: str) -> GrammarTooComplex:
        return GrammarTooComplex(f"the grammar's token mask took {took} of {self.mask_budget_s:g} s "
                                 "(grammar_mask_budget_s): simplify the constraint")

    def accept(self, seq: Sequence, token_id: int) -> None:
        """Advance ``seq``'s matcher by the sampled token.

        Raises
        ------
        SampledTokenRejected
            If the matcher rejects it (a mask and sampler disagreement: fails this request only).
        """
        if seq.matcher is None:
            return
        try:
            accepted = seq.matcher.accept_token(token_id)
        except InvalidTokenError as exc:  # outside the grammar's vocabulary: the engine sampled it all the same
            raise SampledTokenRejected(f"the grammar rejected sampled token {token_id}: {exc.message}") from exc
        if not accepted:
            raise SampledTokenRejected(f"the grammar rejected sampled token {token_id}")

    def offload(self, fn: Callable, *args: Any) -> cf.Future:
        """Run ``fn(*args)`` where compiles run (a worker process), under the compile deadline.

        For conversions a request needs before it has a constraint (tool schemas to a Lark grammar);
        ``fn`` must be importable by name and its arguments picklable.
        """
        if self._workers is None:
            return self._pool.submit(fn, *args)
        return self._workers.call(fn, *args, timeout_s=self.timeout_s)

    def warm_up(self) -> cf.Future:
        """Warm the grammar machinery (``grammar/warmup.py``) where it runs: every compile worker compiles the
        warm-up schema (its vocabulary tables, compiled scan walks, common terminal DFAs), then this process
        walks the instance through masks and accepts (its own scan walks and tables).

        Called at engine start, so that the first constrained request of the process costs what any new
        schema costs; compiles submitted meanwhile queue behind it. The future holds the ``WarmupReport`` of
        the walk here; a failure is logged and leaves compiles to build what they need themselves.
        """
        future: cf.Future = cf.Future()
        future.add_done_callback(_log_warmup_failure)
        threading.Thread(target=self._warm_up, args=(future,), name="llms-grammar-warmup", daemon=True).start()
        return future

    def prestart(self) -> None:
        """Start the compile workers in the background (a server does, so its first compiles find them warm)."""
        if self._workers is not None:
            self._workers.prestart()

    def shutdown(self) -> None:
        if self._workers is not None:
            self._workers.shutdown()
        else:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- internals --------------------------------------------------------------------------------

    def _start_compile(self, constraint: Constraint) -> cf.Future:
        self._stats["grammar_compiles_total"] += 1
        start = time.perf_counter()
        if self._workers is None:
            future = self._pool.submit(lambda: compile_and_warm(self._get_compiler(), constraint))
        else:
            future = self._workers.compile(constraint, timeout_s=self.timeout_s)

        def done(_: cf.Future) -> None:
            self._stats["grammar_compile_seconds_total"] += time.perf_counter() - start

        future.add_done_callback(done)
        return future

    def _worker_init(self) -> WorkerInit:
        vocab, eos, special = self._vocab_tables()
        return WorkerInit(vocab=vocab, eos_token_ids=eos, special_token_ids=special,
                          compiler_options={"compile_timeout_s": self.timeout_s}, mask_budget_s=self.mask_budget_s,
                          memory_mb=self.memory_mb, limits=self.limits)

    def _vocab_tables(self) -> tuple[list[bytes], list[int], list[int]]:
        from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface

        vocab, _, special = vocab_from_huggingface(self.tokenizer.backend)
        # The engine's EOS ids (tokenizer config + generation config) are the ones it stops on.
        eos = list(self.tokenizer.eos_token_ids)
        return list(vocab), eos, [t for t in special if t not in eos]

    def _warm_up(self, future: cf.Future) -> None:
        from lightllm_struct.grammar.warmup import WARMUP_SCHEMA, warm_walk

        start = time.perf_counter()
        try:
            warmup = Constraint("json_schema", WARMUP_SCHEMA)
            jobs = [self._start_compile(warmup) for _ in range(self._n_workers)]
            grammar = jobs[0].result()
            for job in jobs[1:]:
                job.result()
            report = warm_walk(grammar)
        except BaseException as exc:  # noqa: BLE001 -- reported through the future (and logged there)
            future.set_exception(exc)
            return
        self._stats["grammar_warmup_seconds"] = time.perf_counter() - start
        future.set_result(report)

    def _get_compiler(self) -> Any:
        with self._compiler_lock:
            if self._compiler is None:
                from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo
                from lightllm_struct.grammar.masks.budget import byte_columns

                vocab, eos, special = self._vocab_tables()
                info = TokenizerInfo.from_vocab(vocab, eos_token_ids=eos, special_token_ids=special)
                self._compiler = GrammarCompiler(info, compile_timeout_s=self.timeout_s)
                byte_columns(info)  # budget-aware masks' token table, here rather than in a step
                gc.freeze()  # the vocabulary tables live as long as the engine: out of every full collection
            return self._compiler

    def _in_use(self, future: cf.Future) -> bool:
        """A cached compile stays while it runs, a request waits for it or a live matcher walks its grammar."""
        return self._users.in_use(future) or any(f is future for _, f, _ in list(self._pending.values()))

    def _fits(self, seq: Sequence, grammar: Any) -> bool:
        """Whether ``seq``'s budget can hold an answer (if not, ``poll`` fails it with the reason)."""
        try:
            check_budget(seq, grammar, self.max_model_len)
        except LightLLMStructError:
            return False
        return True

    def _attach(self, seq: Sequence, grammar: Any) -> None:
        if self._matcher_cls is None:
            from lightllm_struct.grammar import Matcher

            self._matcher_cls = Matcher
        seq.matcher = self._matcher_cls(grammar)
        self._users.add(grammar, seq.matcher)
        seq.output_bound = output_bound(seq.req.constraint, grammar)

    def _key(self, constraint: Constraint) -> str:
        return f"{getattr(self.tokenizer, 'model_dir', '')}|{constraint.canonical()}"

    def _forget(self, constraint: Constraint, future: cf.Future) -> None:
        """Drop a failed compile from the cache so a transient failure (a timeout) is retried next time."""
        key = self._key(constraint)
        if self._cache.get(key) is future:
            self._cache.pop(key)


def _log_warmup_failure(future: cf.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("grammar warm-up failed: %s", future.exception())


def output_bound(constraint: Constraint, grammar: Any) -> int | None:
    """A hard upper bound on the output tokens the grammar allows (EOS included), if one is known.

    Every token carries at least one byte, so a bound on the output's bytes bounds its tokens: admission can
    then reserve exactly what a choice list can ever use instead of max_tokens.
    """
    bound = getattr(grammar, "max_output_tokens", None)
    if isinstance(bound, int):
        return bound
    if constraint.kind == "choice":
        return max(len(c.encode()) for c in constraint.spec) + 1
    return None


def _as_typed(exc: BaseException) -> LightLLMStructError:
    if isinstance(exc, LightLLMStructError):
        return exc
    logger.error("grammar compilation failed unexpectedly", exc_info=exc)
    return GrammarError("grammar compilation failed (see the server log)")
