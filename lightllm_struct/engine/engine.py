"""The engine: continuous batching over a token-level KV cache, one step at a time.

request -> scheduler (which tokens run) -> model runner (forward) -> sampler (with grammar masks)
-> output processor (stop checks, text) -> RequestOutput. Single-threaded: whoever calls ``step`` owns it.
"""
from __future__ import annotations

import gc
import random
from dataclasses import dataclass

import torch

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.inflight import InflightTokens
from lightllm_struct.engine.grammar_manager import GrammarManager
from lightllm_struct.engine.kv_cache import ReqToTokenTable, SlotAllocator
from lightllm_struct.engine.logprobs import record_prompt_logprobs, record_sample_logprobs
from lightllm_struct.engine.model_runner import ModelRunner
from lightllm_struct.engine.output_processor import append_token, make_output
from lightllm_struct.engine.prefill_budget import PrefillBudget
from lightllm_struct.engine.prefix_cache import PrefixCache
from lightllm_struct.engine.scheduler import ScheduledBatch, Scheduler
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.engine.backends import resolve_backends
from lightllm_struct.engine.build import build_cuda_graphs, build_kv, load
from lightllm_struct.engine.constraint_limits import constraint_limits
from lightllm_struct.engine.step_guard import fail_request, sampling_tensors
from lightllm_struct.errors import InvalidRequestError, PromptTooLongError
from lightllm_struct.request import Constraint, Request, RequestOutput, RequestStatus


@dataclass(frozen=True)
class KVStats:
    num_free: int
    num_total: int
    num_evictable: int  # held by the prefix cache only: reclaimable at once

    @property
    def num_reclaimable(self) -> int:
        return self.num_free + self.num_evictable


class Engine:
    """Generates tokens for many requests at once.

    Parameters
    ----------
    config:
        The engine configuration.
    loaded:
        An already loaded ``(model, model_config, model_dir)`` (tensor-parallel workers, tests); by default
        ``config.model`` is loaded.

    Raises
    ------
    ModelLoadError
        If the model cannot be loaded.
    """

    def __init__(self, config: EngineConfig | None = None, *, loaded: tuple | None = None) -> None:
        self.config = config = config or EngineConfig()
        self.device = config.resolve_device()
        self.backends = resolve_backends(config.kernels, self.device)
        self.model, self.model_config, self.tokenizer = load(config, loaded, self.backends, self.device)
        self.kv_cache, self.max_model_len = build_kv(config, self.model, self.model_config, self.device)
        # The last slot is never handed out: padding rows of captured CUDA graphs write their K/V there.
        self.allocator = SlotAllocator(self.kv_cache.num_slots - 1)
        table = ReqToTokenTable(max_rows=config.max_num_seqs, max_seq_len=self.max_model_len, device=self.device)
        graphs = build_cuda_graphs(config, self.model, self.kv_cache, scratch_slot=self.kv_cache.num_slots - 1,
                                   max_context=self.max_model_len)
        self.prefix_cache = PrefixCache(self.allocator) if config.enable_prefix_caching else None
        self.scheduler = Scheduler(config, allocator=self.allocator, table=table, prefix_cache=self.prefix_cache,
                                   max_model_len=self.max_model_len,
                                   max_decode_tokens=graphs.max_tokens_per_seq if graphs is not None else None,
                                   prefill_budget=PrefillBudget.from_config(config, device_type=self.device.type))
        self.runner = ModelRunner(self.model, kv_cache=self.kv_cache, table=table, device=self.device,
                                  graphs=graphs)
        self.grammar = GrammarManager(self.tokenizer, vocab_size=self.model_config.vocab_size,
                                      threads=config.grammar_compile_threads,
                                      timeout_s=config.grammar_compile_timeout_s, cache_size=config.grammar_cache_size,
                                      pin_memory=self.device.type == "cuda", mask_budget_s=config.grammar_mask_budget_s,
                                      max_model_len=self.max_model_len,
                                      memory_mb=config.grammar_compile_memory_mb, limits=constraint_limits(config),
                                      cache_max_bytes=_mb(config.grammar_cache_max_mb),
                                      recycle_mb=config.grammar_compile_worker_recycle_mb)
        self.sampler = self.backends.sampler
        self.jump_forward = config.enable_jump_forward is not False  # see EngineConfig.enable_jump_forward
        self.eos_token_ids = frozenset(self.tokenizer.eos_token_ids) | frozenset(self.model_config.eos_token_ids)
        self._seqs: dict[str, Sequence] = {}
        self._outbox: list[RequestOutput] = []  # finished outside a step (aborts, failed compiles)
        self._inflight: InflightTokens | None = None  # the last step's tokens, not yet recorded
        # See EngineConfig.overlap: on CUDA the host's work for a step hides behind the next forward.
        self.overlap = self.device.type == "cuda" if config.overlap is None else config.overlap
        # The model, tokenizer and vocabulary tables are millions of long-lived objects: keep the cyclic
        # garbage collector from re-scanning them in every full collection (pauses showed in step-time tails).
        gc.freeze()

    # -- public API ---------------------------------------------------------------------------------

    def add_request(self, req: Request) -> None:
        """Queue ``req``; it joins the running batch at a coming step (after its grammar compiles).

        Raises
        ------
        InvalidRequestError
            Duplicate id, empty prompt, token ids out of range, or a constraint of the wrong type.
        PromptTooLongError
            If the prompt leaves no room for one output token within ``max_model_len``.
        """
        self._validate(req)
        seq = Sequence(req=req, seed=req.sampling.seed if req.sampling.seed is not None else random.getrandbits(62),
                       detokenizer=self.tokenizer.detokenizer())
        self._seqs[req.request_id] = seq
        if req.constraint is None:
            seq.place(RequestStatus.WAITING)
            self.scheduler.add(seq)
        elif self.grammar.submit(seq):  # it places seq: WAITING if the grammar is cached, else WAITING_FOR_GRAMMAR
            self.scheduler.add(seq)

    def abort_request(self, request_id: str) -> None:
        """Finish ``request_id`` as aborted and free its KV slots at once (unknown or finished ids: no-op)."""
        seq = self._seqs.get(request_id)
        if seq is None or seq.finished:
            return
        self.grammar.abort(request_id)
        self._retire(seq, RequestStatus.FINISHED_ABORTED)

    def has_unfinished(self) -> bool:
        return bool(self._seqs) or bool(self._outbox)

    @torch.inference_mode()
    def step(self) -> list[RequestOutput]:
        """Run one step; returns the outputs of requests that progressed or finished in it.

        With ``overlap`` the host works while the device computes: step t's forward is queued first, then
        step t-1's tokens are read and recorded, then t's masks are filled; t's tokens are recorded in t+1.
        """
        self._admit_compiled()
        batch = self.scheduler.schedule()
        logits = self.runner.launch(batch, self._inflight)
        outputs = self._update_and_stream() if self.overlap else []
        bitmask = self.grammar.fill_bitmask(batch.sampled)
        self._inflight = self._sample(logits.logits, batch, bitmask)
        for seq, first, prompt_logits in logits.prompt_logits:
            record_prompt_logprobs(seq, first, prompt_logits)
        return outputs if self.overlap else self._update_and_stream()

    @property
    def kv(self) -> KVStats:
        evictable = self.prefix_cache.num_evictable if self.prefix_cache else 0
        return KVStats(self.allocator.num_free, self.allocator.num_total, evictable)

    def stats(self) -> dict[str, float]:
        """Flat numbers for metrics and /health (read from other threads: approximate by design)."""
        kv = self.kv
        return {"num_running": len(self.scheduler.running), "num_waiting": len(self.scheduler.waiting),
                "num_waiting_for_grammar": self.grammar.num_pending,
                "kv_usage": 1.0 - kv.num_reclaimable / kv.num_total, "kv_free_slots": kv.num_free,
                "kv_total_slots": kv.num_total, "num_preemptions": self.scheduler.num_preemptions,
                **self.grammar.stats}

    def flush_prefix_cache(self) -> int:
        """Evict every unused prefix-cache entry; returns the slots freed."""
        return self.prefix_cache.flush() if self.prefix_cache else 0

    def shutdown(self) -> None:
        self.grammar.shutdown()
        stop_ranks = getattr(self.model, "shutdown", None)  # a TensorParallelModel: stop the other ranks
        if stop_ranks is not None:
            stop_ranks()

    # -- step helpers -----------------------------------------------------------------------------

    def _admit_compiled(self) -> None:
        """Move requests whose grammar compiled into the queue; fail those whose compile failed."""
        if not self.grammar.num_pending:
            return
        if not self.scheduler.has_work():
            self.grammar.wait(timeout=0.05)  # nothing else to run: don't spin
        ready, failed = self.grammar.poll()
        for seq in ready:
            self.scheduler.add(seq)
        for seq, error in failed:
            self._retire(seq, RequestStatus.FINISHED_ERROR, error=error)

    def _sample(self, logits: torch.Tensor | None, batch: ScheduledBatch,
                bitmask: torch.Tensor | None) -> InflightTokens | None:
        """Queue the sampling of ``batch``'s rows; the tokens stay on the device until read."""
        if logits is None:
            return None
        seqs = batch.sampled
        params = sampling_tensors(seqs, logits.device, eos_token_ids=self.eos_token_ids)
        if bitmask is not None:
            bitmask = bitmask.to(logits.device, non_blocking=True)
        rows = [i for i, s in enumerate(seqs) if s.req.sampling.logprobs is not None and not s.finished]
        raw = logits[rows].clone() if rows else None  # the sampler penalises ``logits`` in place
        tokens = self.sampler(logits, params, bitmask)
        if rows:  # reads the device: only steps with a request that asks pay for it
            record_sample_logprobs(seqs, rows, logits=logits, raw=raw, params=params, bitmask=bitmask,
                                   tokens=tokens)
        return InflightTokens.start(batch, tokens)

    def _update_and_stream(self) -> list[RequestOutput]:
        """Record each sampled token in flight, finish what stops, and snapshot every request that moved."""
        outputs, self._outbox = self._outbox, []
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return outputs
        for seq, token, keep in zip(inflight.seqs, inflight.tokens(), inflight.keep):
            if self._seqs.get(seq.request_id) is not seq:
                continue  # retired (aborted) while its token was in flight: its output went out then
            if keep and not seq.finished:  # else it failed in its step (its mask or sampling row)
                self._process_token(seq, token)
            if seq.finished:
                self._release(seq)
            elif keep:
                self.scheduler.cache_prompt(seq)
            if keep or seq.finished:
                outputs.append(make_output(seq))
        return outputs

    def _process_token(self, seq: Sequence, token: int) -> None:
        try:
            self._accept(seq, token)
            # A forced token has no sampled distribution to report: requests asking for logprobs sample all.
            if self.jump_forward and seq.matcher is not None and not seq.finished \
                    and seq.req.sampling.logprobs is None:
                # Tokens the grammar forces are appended without sampling; the next step computes them all.
                for forced in seq.matcher.forced_tokens():
                    self._accept(seq, forced)
                    if seq.finished:
                        break
        except Exception as exc:  # noqa: BLE001 -- one request's failure must not end the others
            fail_request(seq, exc, "accepting its sampled token")

    def _accept(self, seq: Sequence, token: int) -> None:
        self.grammar.accept(seq, token)
        append_token(seq, token, eos_token_ids=self.eos_token_ids, max_model_len=self.max_model_len)

    def _retire(self, seq: Sequence, status: RequestStatus, *, error: BaseException | None = None) -> None:
        """Finish ``seq`` outside the normal token path; its output goes out with the next step."""
        if not seq.finished:
            seq.finish(status, error=error)
        self._release(seq)
        self._outbox.append(make_output(seq))

    def _release(self, seq: Sequence) -> None:
        self.scheduler.finish(seq)
        self._seqs.pop(seq.request_id, None)

    def _validate(self, req: Request) -> None:
        if req.request_id in self._seqs:
            raise InvalidRequestError(f"request id {req.request_id!r} is already in flight", param="request_id")
        if not req.prompt_token_ids:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        vocab = self.model_config.vocab_size
        if any(not 0 <= t < vocab for t in req.prompt_token_ids):
            raise InvalidRequestError(f"prompt token ids must be in [0, {vocab})", param="prompt")
        if any(t >= vocab for t in req.sampling.logit_bias):
            raise InvalidRequestError(f"logit_bias token ids must be in [0, {vocab})", param="logit_bias")
        if len(req.prompt_token_ids) >= self.max_model_len:
            raise PromptTooLongError(f"the prompt has {len(req.prompt_token_ids)} tokens; this engine takes at "
                                     f"most {self.max_model_len - 1} (max_model_len {self.max_model_len})",
                                     param="prompt")
        if req.constraint is not None and not isinstance(req.constraint, Constraint):
            raise InvalidRequestError("constraint must be an engine Constraint", param="constraint")


def _mb(mb: int | None) -> int | None:
    return None if mb is None else mb << 20
