"""The compile worker process: set up once per vocabulary, then compile constraints until told to stop.

A compile runs here, not in the engine's interpreter, so its CPU time never holds the engine's GIL and the
pool can kill it at its deadline (a thread cannot be stopped). What comes back is the whole
``CompiledGrammar`` (LR tables, DFAs, product lexers and the first mask, which the worker computes as a
probe), pickled with the vocabulary-wide objects (``TokenizerInfo`` and its shared scan caches) replaced by
references: both processes built them from the same vocabulary, so they are never sent per compile.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import signal
import threading
from dataclasses import dataclass, field
from typing import Any

from lightllm_struct.engine.constraint_limits import ConstraintLimits, check_limits
from lightllm_struct.errors import LightLLMStructError
from lightllm_struct.grammar.errors import CompileTimeout, GrammarError, GrammarTooComplex

logger = logging.getLogger(__name__)

_LOCK, _RLOCK = type(threading.Lock()), type(threading.RLock())


class CompileWorkerDied(GrammarError):
    """A compile worker process ended without answering (killed for memory, crashed); it was replaced."""

    http_status = 422
    code = "grammar_compile_failed"


@dataclass(frozen=True)
class WorkerInit:
    """What a worker needs once: the vocabulary, the compiler's options and its limits."""

    vocab: list[bytes]
    eos_token_ids: list[int]
    special_token_ids: list[int]
    compiler_options: dict = field(default_factory=dict)
    mask_budget_s: float = 1.0
    memory_mb: int | None = None
    limits: ConstraintLimits = field(default_factory=ConstraintLimits)
    # Build the shortest-finish and budget tables with each grammar (``compile_and_warm``); the server's
    # tracking grammars walk bytes only and skip them (20 MB for a tool of 250 parameters).
    warm: bool = True


class _VocabPickler(pickle.Pickler):
    """Pickles a grammar with the vocabulary's objects as references and its locks as fresh ones."""

    def __init__(self, file, tokenizer) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._refs = {id(tokenizer): ("tokenizer",)}
        self._refs.update({id(obj): ("shared", key) for key, obj in tokenizer._shared.items()})
        if tokenizer._trie is not None:
            self._refs[id(tokenizer._trie)] = ("trie",)

    def persistent_id(self, obj: Any) -> Any:
        return self._refs.get(id(obj))

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _LOCK):
            return threading.Lock, ()
        if isinstance(obj, _RLOCK):
            return threading.RLock, ()
        if isinstance(obj, threading.local):  # per-thread scratch: starts empty in the engine
            return type(obj), ()
        return NotImplemented  # a UnionLexer pickles itself compactly (``UnionLexer.__reduce__``)


class _VocabUnpickler(pickle.Unpickler):
    def __init__(self, file, tokenizer) -> None:
        super().__init__(file)
        self._tokenizer = tokenizer

    def persistent_load(self, pid: Any) -> Any:
        if pid == ("tokenizer",):
            return self._tokenizer
        if pid == ("trie",):
            return self._tokenizer.trie
        return _shared_object(self._tokenizer, pid[1])


def _shared_object(tok: Any, key: Any) -> Any:
    """The receiver's own per-vocabulary object under ``key``, built here if this process has not yet (a
    server's byte-vocabulary tracking grammars arrive before it ever computed a mask)."""
    obj = tok._shared.get(key)
    if obj is not None:
        return obj
    if key == "budget_columns":
        from lightllm_struct.grammar.masks.budget import byte_columns

        return byte_columns(tok)
    if isinstance(key, tuple) and key[0] == "scan_cache":
        from lightllm_struct.grammar.masks.token_mask import scan_cache_for

        return scan_cache_for(tok, key[1])
    raise KeyError(f"no per-vocabulary object {key!r} to attach the grammar to")


def dump_grammar(grammar: Any, tokenizer: Any) -> bytes:
    buf = io.BytesIO()
    _VocabPickler(buf, tokenizer).dump(grammar)
    return buf.getvalue()


def load_grammar(data: bytes, tokenizer: Any) -> Any:
    return _VocabUnpickler(io.BytesIO(data), tokenizer).load()


def _typed_cause(exc: BaseException) -> BaseException:
    """The typed error behind a wrapper (lark's VisitError wraps what a transformer raised, our alarm's too)."""
    seen = 0
    while not isinstance(exc, LightLLMStructError) and seen < 8:
        inner = getattr(exc, "orig_exc", None) or exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc, seen = inner, seen + 1
    return exc


def pack_error(exc: BaseException) -> tuple[type, dict]:
    """A typed error as (class, attributes): exceptions with keyword options do not survive plain pickling."""
    typed = _typed_cause(exc)
    exc = typed if isinstance(typed, LightLLMStructError) else exc
    if not isinstance(exc, LightLLMStructError):
        logger.error("grammar compilation failed unexpectedly", exc_info=exc)
        exc = GrammarError("grammar compilation failed (see the server log)")
    return type(exc), dict(vars(exc))


def unpack_error(packed: tuple[type, dict]) -> LightLLMStructError:
    cls, state = packed
    exc = cls.__new__(cls)
    Exception.__init__(exc, state.get("message", ""))
    exc.__dict__.update(state)
    return exc


class _Alarm:
    """Raise ``error`` in this (the worker's main) thread after ``seconds``: pure-Python loops stop too.

    An alarm can land between any two bytecodes, in the middle of filling a process-wide cache (lazy lexer
    rows, shared DFAs, a library's own memo): after one has fired, the worker's state is suspect, so the job's
    reply asks the pool to replace it (``fired``). Under load the CI fuzz slice saw a later compile of the same
    worker end in an untyped error about once in ten runs.
    """

    fired = False  # set by any alarm of this process; compile_job clears it before each job
    fired_error: LightLLMStructError | None = None  # what the last alarm raised

    def __init__(self, seconds: float, error: LightLLMStructError) -> None:
        self.seconds, self.error = seconds, error

    def _fire(self, *_: Any) -> None:
        _Alarm.fired, _Alarm.fired_error = True, self.error
        raise self.error

    def __enter__(self) -> None:
        signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *_: Any) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # an alarm already delivered must not fire later


def _limit_memory(memory_mb: int | None) -> None:
    """Cap the address space at what the set-up uses plus ``memory_mb``: a runaway compile gets MemoryError."""
    if memory_mb is None:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        limit = used + (memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError, ImportError):
        logger.warning("compile workers run without a memory limit on this platform")


def _setup(init: WorkerInit) -> tuple[Any, Any]:
    from lightllm_struct.engine.grammar_manager import compile_and_warm, compile_constraint
    from lightllm_struct.grammar import GrammarCompiler, TokenizerInfo
    from lightllm_struct.request import Constraint

    info = TokenizerInfo.from_vocab(init.vocab, eos_token_ids=init.eos_token_ids,
                                    special_token_ids=init.special_token_ids)
    compiler = GrammarCompiler(info, **init.compiler_options)
    # Before any deadline: the first schema imports jsonschema, whose format checkers build a Lark grammar
    # at import time (seconds on a busy machine); an alarm inside an import leaves the module half made. The
    # first compile and mask also load (or, after an upgrade, build) numba's cached kernels. Set-up is bounded
    # by the pool's start-up timeout, not by a compile's deadline: under load it took over 2 s, and a worker
    # that raised its own CompileTimeout here never started.
    deadline, compiler.compile_timeout_s = compiler.compile_timeout_s, None
    try:
        schema = {"type": "object", "properties": {"a": {"type": "string", "format": "uri"}}}
        # compile_and_warm builds the vocabulary's budget-check tables too (numba kernels compiled on a fresh
        # install: an alarm inside numba's compile leaves it broken for the worker's life)
        grammar = (compile_and_warm if init.warm else compile_constraint)(compiler, Constraint("json_schema", schema))
        _first_mask(grammar, info)
    finally:
        compiler.compile_timeout_s = deadline
    return info, compiler


def _probe_first_mask(grammar: Any, info: Any, budget_s: float) -> None:
    """The first mask, computed here under the per-step budget: a grammar whose masks alone would stall the
    batch is refused now, and the cached mask travels with the grammar."""
    error = GrammarTooComplex(f"the grammar's first token mask takes over {budget_s:g} s to compute "
                              "(grammar_mask_budget_s): simplify the constraint")
    with _Alarm(budget_s, error):
        _first_mask(grammar, info)


def _first_mask(grammar: Any, info: Any) -> None:
    import torch

    from lightllm_struct.grammar import Matcher

    mask = torch.empty(1, info.num_words, dtype=torch.int32)
    Matcher(grammar).fill_next_token_bitmask(mask, index=0)


def compile_job(compiler: Any, info: Any, init: WorkerInit, job: tuple) -> tuple:
    """Run one job: ("compile", constraint, timeout_s) or ("call", fn, args, timeout_s); the reply is
    ``(kind, payload)``, plus ``RESTART`` when an alarm interrupted the job (the pool replaces the worker)."""
    _Alarm.fired = False
    reply = _run_job(compiler, info, init, job)
    return (*reply, RESTART) if _Alarm.fired else reply


RESTART = "restart"


def _run_job(compiler: Any, info: Any, init: WorkerInit, job: tuple) -> tuple[str, Any]:
    from lightllm_struct.engine.grammar_manager import compile_and_warm, compile_constraint

    timeout = job[-1]
    try:
        with _Alarm(timeout, CompileTimeout(f"grammar compilation exceeded its deadline of {timeout:g} s")):
            if job[0] == "call":
                return "value", job[1](*job[2])
            check_limits(job[1], init.limits)
            grammar = (compile_and_warm if init.warm else compile_constraint)(compiler, job[1])
        _probe_first_mask(grammar, info, init.mask_budget_s)
        return "grammar", dump_grammar(grammar, info)
    except MemoryError:
        return "error", pack_error(GrammarTooComplex("grammar compilation ran out of its memory budget"))
    except RecursionError:
        return "error", pack_error(GrammarTooComplex("the constraint nests too deeply to compile"))
    except Exception as exc:  # noqa: BLE001 -- every failure goes back typed; the worker lives on
        return "error", pack_error(_after_alarm(exc))
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException:  # noqa: BLE001 -- rpds (jsonschema's Rust maps) panics as pyo3's PanicException, a
        # BaseException that no module exports: every BaseException but the interpreter's own stop signals
        return "error", pack_error(GrammarTooComplex("the constraint nests too deeply to compile"))


def _after_alarm(exc: BaseException) -> BaseException:
    """What to report for ``exc``: an untyped error raised after an alarm fired is the alarm's consequence. The
    alarm's own exception can be swallowed where it lands (numba compiling a kernel calls back into Python
    through ctypes, which only prints it), and the code around it then fails in its own way ("no compiled
    object yet"): the fuzz benchmark saw that as an untyped error instead of the deadline it was."""
    if _Alarm.fired and _Alarm.fired_error is not None and not isinstance(_typed_cause(exc), LightLLMStructError):
        return _Alarm.fired_error
    return exc


# Compiles are background work beside the engine's step loop: on a machine with few cores, hostile compiles
# running to their deadline took the CPU the steps needed (issue 11's load test: good p99 2.3x with 15
# compiles of 30 s in 3 minutes on 2 cores). A niced worker still gets every idle cycle.
WORKER_NICENESS = 10


def _lower_priority() -> None:
    try:
        os.nice(WORKER_NICENESS)
    except (OSError, AttributeError):  # not permitted, or no nice() on this platform: run at the same priority
        logger.warning("compile workers run at the engine's CPU priority on this platform")


def worker_main(conn: Any) -> None:
    """The worker's loop: read its ``WorkerInit``, answer ("ready",), then one reply per job until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops the pool
    _lower_priority()
    init = pickle.loads(conn.recv_bytes())
    info, compiler = _setup(init)
    _limit_memory(init.memory_mb)
    conn.send_bytes(pickle.dumps(("ready",)))
    while True:
        try:
            job = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        conn.send_bytes(pickle.dumps(compile_job(compiler, info, init, job), protocol=pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    import sys
    from multiprocessing.connection import Connection

    # Through the package's module, not this __main__ copy: what the worker pickles must name importable code.
    from lightllm_struct.engine import compile_worker

    compile_worker.worker_main(Connection(int(sys.argv[1])))
