"""Rank 0's view of a tensor-parallel model: the plain model's interface, with the other ranks in tow.

``load_tp_model`` starts the ranks and returns a :class:`TensorParallelModel` that the engine uses exactly
like ``LlamaForCausalLM``: each ``forward`` first broadcasts the step's inputs (one message), then runs
rank 0's own shard while the other ranks run theirs; ``compute_logits`` returns the full-vocabulary logits
gathered from every rank, on rank 0, where the single sampler and the grammar masks live.
"""
from __future__ import annotations

import atexit
import functools
import logging
import multiprocessing.connection
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from lightllm_struct.distributed.channel import Op
from lightllm_struct.distributed.group import DEFAULT_TIMEOUT_S, destroy_distributed
from lightllm_struct.distributed.health import RankFailure, RankWatchdog, describe_exit, exit_process, reap
from lightllm_struct.distributed.launcher import LaunchedRanks, join_from_env, launch_ranks
from lightllm_struct.distributed.shard import ShardSpec, pack_step, send_kv_setup, shard_main
from lightllm_struct.distributed.worker import channel_for
from lightllm_struct.models.ops import TORCH_OPS, LayerOps

log = logging.getLogger(__name__)


class TensorParallelModel:
    """Drop-in for the model on rank 0 (attributes not defined here are the local shard's).

    Parameters
    ----------
    model:
        Rank 0's shard (``LlamaForCausalLM`` built with this rank's ``TensorParallel``).
    ranks:
        The launched job (its processes are watched; empty under torchrun).
    exit_on_failure:
        End this process (SIGTERM, then a hard exit after a grace period) when a rank fails: what a server
        wants. Otherwise the failure is raised as ``RankFailure`` from the next call.
    """

    def __init__(self, model, ranks: LaunchedRanks, *, exit_on_failure: bool = False) -> None:
        self.model = model
        self.ranks = ranks
        self.channel = channel_for(ranks.ctx)
        self.exit_on_failure = exit_on_failure
        self.failure: RankFailure | None = None
        self._lock = threading.Lock()
        self._failure_lock = threading.Lock()
        self._kv_id: int | None = None
        self._announced_rows: int | None = None
        self._closed = False
        self._watchdog = RankWatchdog(ranks.procs, on_failure=self._on_failure).start() if ranks.procs else None
        # Runs before multiprocessing's own exit hook (registered earlier) would kill the daemonic ranks,
        # which the watchdog would otherwise report as a failure.
        atexit.register(self.shutdown)

    def __getattr__(self, name: str):
        # Only reached for names not found on the proxy: everything else is the local shard's.
        model = self.__dict__.get("model")
        if model is None:
            raise AttributeError(name)
        return getattr(model, name)

    @property
    def tp_size(self) -> int:
        return self.ranks.ctx.world_size

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, *, meta, kv_cache,
                attn_backend=None, logits_indices: torch.Tensor | None = None) -> torch.Tensor:
        """Broadcast the step and run rank 0's shard; same contract as ``LlamaForCausalLM.forward``.

        ``logits_indices`` (optional) names the rows ``compute_logits`` will be called with, letting the
        other ranks project them at once; without it ``compute_logits`` ships the chosen rows (one more
        message).

        Raises
        ------
        RankFailure
            A rank died or a collective failed or timed out; the engine cannot continue.
        """
        with self._guard():
            if id(kv_cache) != self._kv_id:
                send_kv_setup(self.channel, kv_cache)
                self._kv_id = id(kv_cache)
            host, tensors = pack_step(input_ids, positions, meta, logits_indices)
            self.channel.send(Op.STEP, host, tensors)
            self._announced_rows = None if logits_indices is None else int(logits_indices.numel())
            return self.model.forward(input_ids, positions, meta=meta, kv_cache=kv_cache, attn_backend=attn_backend)

    __call__ = forward

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits ``[N, vocab_size]`` of ``hidden``'s rows, gathered from every rank's vocabulary shard."""
        with self._guard():
            announced, self._announced_rows = self._announced_rows, None
            if announced is None:
                self.channel.send(Op.LOGITS, {}, {"hidden": hidden})
            elif announced != hidden.shape[0]:
                # The other ranks already gather `announced` rows: going on would mix up the collective.
                self._fail(RankFailure(f"compute_logits got {hidden.shape[0]} rows after forward announced "
                                       f"{announced} (logits_indices); the ranks are out of step"))
            return self.model.compute_logits(hidden)

    def shutdown(self, *, timeout_s: float = 10.0) -> None:
        """Stop the other ranks and leave the groups (idempotent)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.shutdown)
        if self._watchdog is not None:
            self._watchdog.stop()
        if self.failure is None:
            try:
                self.channel.send(Op.SHUTDOWN)
            except (RuntimeError, dist.DistError):
                log.warning("tensor-parallel shutdown message failed; killing the ranks", exc_info=True)
        self.ranks.join(timeout_s=timeout_s)
        destroy_distributed()

    close = shutdown

    @contextmanager
    def _guard(self):
        if self.failure is not None:
            raise self.failure
        with self._lock:
            try:
                yield
            except (RuntimeError, dist.DistError) as e:  # what gloo/NCCL raise for a broken or late peer
                self._fail(self._collective_failure(e))

    def _collective_failure(self, e: BaseException) -> RankFailure:
        # A peer's death breaks the collective a moment before its exit is visible: wait that moment so
        # the error names the rank and how it ended, not only the broken socket.
        sentinels = {p.sentinel: r for r, p in self.ranks.procs.items()}
        ended = multiprocessing.connection.wait(list(sentinels), timeout=2.0) if sentinels else []
        if self.failure is not None:
            return self.failure
        if ended:
            rank = sentinels[ended[0]]
            proc = self.ranks.procs[rank]
            reap(proc)
            return RankFailure(f"{describe_exit(rank, proc)}; the engine cannot continue", rank=rank)
        return RankFailure(f"a tensor-parallel collective failed (a rank died or hung): {e}")

    def _fail(self, failure: RankFailure):
        self._on_failure(failure)
        raise self.failure

    def _on_failure(self, failure: RankFailure) -> None:
        """Record the first failure, stop the surviving ranks, and (for a server) end the process once."""
        with self._failure_lock:
            first = self.failure is None
            self.failure = self.failure or failure
        # Peers blocked in a collective with the dead rank fail at once when they lose their sockets too.
        self.ranks.terminate()
        if first and self.exit_on_failure:
            exit_process(self.failure.message)


def load_tp_model(path_or_none: str | Path | None = None, *, tensor_parallel_size: int,
                  device: str = "cpu", dtype: torch.dtype = torch.float32, attn_backend: str = "auto",
                  ops: LayerOps = TORCH_OPS, timeout_s: float = DEFAULT_TIMEOUT_S,
                  exit_on_failure: bool = False):
    """``load_model`` over ``tensor_parallel_size`` ranks; returns ``(model, config, model_dir)``.

    With size 1 this is ``load_model``. Otherwise ranks 1..N-1 are spawned (or, under torchrun, joined),
    every rank loads only its shard, and ``model`` is a :class:`TensorParallelModel` (call ``shutdown``).

    Parameters
    ----------
    exit_on_failure:
        See :class:`TensorParallelModel` (``EngineConfig.tp_exit_on_failure``; ``serve`` sets it).

    Raises
    ------
    DistributedInitError
        The ranks could not start or meet.
    ModelLoadError
        As ``load_model``.
    """
    from lightllm_struct.models.loader import load_model, resolve_model_dir

    if tensor_parallel_size == 1:
        return load_model(path_or_none, device=device, dtype=dtype, ops=ops,
                          attn_backend=attn_backend)
    model_dir = resolve_model_dir(path_or_none)  # a GGUF is converted once, here, not by every rank
    spec = ShardSpec(model_dir=str(model_dir), device=device, dtype=str(dtype).removeprefix("torch."),
                     attn_backend=attn_backend, ops=ops)
    ctx = join_from_env(device=device, timeout_s=timeout_s)
    if ctx is not None:
        ranks = LaunchedRanks(ctx=ctx, procs={})
    else:
        ranks = launch_ranks(tensor_parallel_size, functools.partial(shard_main, spec=spec), device=device,
                             timeout_s=timeout_s)
    if ranks.ctx.world_size != tensor_parallel_size:
        raise RankFailure(f"launcher gave {ranks.ctx.world_size} ranks, tensor_parallel_size is "
                          f"{tensor_parallel_size}")
    try:
        model = spec.load(ranks.ctx)
    except BaseException:
        ranks.terminate()
        destroy_distributed()
        raise
    return TensorParallelModel(model, ranks, exit_on_failure=exit_on_failure), model.config, model_dir


def run_worker_if_torchrun(config) -> bool:
    """Under torchrun, on ranks > 0: load this rank's shard of ``config.model`` and serve rank 0's steps
    until it shuts down, then return True. Returns False at once on rank 0 or outside torchrun.

    ``lightllm-struct serve`` calls this first, so ``torchrun --nproc-per-node N -m lightllm_struct.cli serve
    --tp N`` makes rank 0 the server and the other ranks its workers.
    """
    from lightllm_struct.distributed.group import Rendezvous
    from lightllm_struct.distributed.launcher import run_rank_from_env
    from lightllm_struct.models.loader import resolve_model_dir

    rdv = Rendezvous.from_env()
    if rdv is None or rdv.rank == 0:
        return False
    device = config.resolve_device()
    spec = ShardSpec(model_dir=str(resolve_model_dir(config.model)), device=device.type,
                     dtype=str(config.resolve_dtype(device)).removeprefix("torch."))
    runner: Callable = functools.partial(shard_main, spec=spec)
    return run_rank_from_env(runner, device=device.type, timeout_s=config.tp_timeout_s)
