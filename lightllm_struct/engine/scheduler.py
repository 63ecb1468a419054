"""Which tokens of which requests run in the next step, and where their KV goes.

One step mixes decodes (one token each, planned first) and prefill chunks under a token budget; while requests
decode, the chunks also share a cost-weighted prefill bound (``prefill_budget.py``) so that a long prompt is spread
over steps instead of stalling every stream. New requests are admitted first-come first-served while the
*future peak* memory of the running requests plus the candidate fits the pool (LightLLM): with ``a_i`` slots held
and ``b_i`` still to come, sorted by ``b`` descending, the peak is ``max_i (b_i * i + sum_{j<=i} a_j)``. ``b`` is
estimated from the last finished output lengths conditioned on what was already produced, capped by max_tokens
and by a grammar's hard bound. When an estimate proves too small, the newest request is preempted (its KV goes
to the prefix cache, so re-admission is cheap).
"""
from __future__ import annotations

import functools
import itertools
from collections import deque
from dataclasses import dataclass, field

import torch

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.kv_cache import ReqToTokenTable, SlotAllocator
from lightllm_struct.engine.prefill_budget import PrefillBudget, StepAllowance
from lightllm_struct.engine.prefix_cache import PrefixCache
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.request import RequestStatus


@dataclass
class ScheduledBatch:
    """The per-step context: what runs, where its KV goes, which rows sample."""

    seqs: list[Sequence] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # first position computed this step, per sequence
    lens: list[int] = field(default_factory=list)  # tokens computed this step, per sequence
    slots: list[torch.Tensor] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.seqs

    @property
    def num_tokens(self) -> int:
        return sum(self.lens)

    @functools.cached_property
    def sample_rows(self) -> list[int]:
        """Indices of sequences whose last computed token is their last token: they get a new token now.

        Computed once, when the step first asks (its new tokens would change the answer afterwards).
        """
        return [i for i, (s, st, n) in enumerate(zip(self.seqs, self.starts, self.lens))
                if st + n == s.num_tokens + s.num_inflight]

    @functools.cached_property
    def sampled(self) -> list[Sequence]:
        return [self.seqs[i] for i in self.sample_rows]

    def add(self, seq: Sequence, start: int, slots: torch.Tensor) -> None:
        self.__dict__.pop("sample_rows", None)
        self.__dict__.pop("sampled", None)
        self.seqs.append(seq)
        self.starts.append(start)
        self.lens.append(slots.numel())
        self.slots.append(slots)


class Scheduler:
    """Owns the waiting queue, the running set and their KV slots."""

    def __init__(self, config: EngineConfig, *, allocator: SlotAllocator, table: ReqToTokenTable,
                 prefix_cache: PrefixCache | None, max_model_len: int, max_decode_tokens: int | None = None,
                 prefill_budget: PrefillBudget | None = None) -> None:
        self.config = config
        # While requests decode, prefill chunks share this bound (engine/prefill_budget.py); None = unbounded.
        self.prefill_budget = prefill_budget or PrefillBudget(budget=None)
        # Past its prompt a sequence runs at most this many tokens a step (forced tokens beyond it wait for
        # the next step), so steps keep the shapes CUDA graphs were captured for; None = no cap.
        self.max_decode_tokens = max_decode_tokens
        self.allocator, self.table, self.prefix_cache = allocator, table, prefix_cache
        self.max_model_len = max_model_len
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.history: deque[int] = deque(maxlen=config.output_history_size)
        self._admissions = itertools.count()
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        """Plan the next step: continue running requests, then admit waiting ones while budget and memory last."""
        batch, budget = ScheduledBatch(), self.config.max_num_batched_tokens
        plan, allowance = self._plan(budget)
        if not self._continue_all(batch, plan):
            for seq, n in zip(list(self.running), plan):
                # A request preempted for an earlier one's room (row -1) or with nothing this step is skipped.
                if n == 0 or seq.row < 0 or not self._make_room(n, protect=seq):
                    continue
                batch.add(seq, seq.num_computed, self._alloc(seq, n))
        budget -= batch.num_tokens
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            n = self._admit(self.waiting[0], budget, batch_empty=batch.empty, allowance=allowance)
            if n == 0:
                break
            seq = self.waiting.popleft()
            self.running.append(seq)
            allowance.spend(n, seq.num_computed)
            batch.add(seq, seq.num_computed, self._alloc(seq, n))
            budget -= n
        return batch

    def _plan(self, budget: int) -> tuple[list[int], StepAllowance]:
        """Tokens each running request computes this step, and what is left of the prefill allowance.

        Decodes are planned first (a stream never waits behind a prefill chunk for its share of the budget),
        then prefill chunks in admission order under the rest of the budget and the prefill allowance, of which
        half is kept for waiting requests when one could be admitted: a short prompt must not queue behind
        every chunk of a long one.
        """
        decoding = [s.num_computed >= len(s.req.prompt_token_ids) for s in self.running]
        allowance = self.prefill_budget.for_step(decoding=any(decoding))
        plan = [0] * len(self.running)
        for i, seq in enumerate(self.running):
            if decoding[i] and budget > 0:
                plan[i] = min(self._todo(seq), budget, self.max_decode_tokens or budget)
                budget -= plan[i]
        admissible = self.waiting and len(self.running) < self.config.max_num_seqs and self.table.num_free_rows
        kept, held = (budget // 2, allowance.hold(0.5)) if admissible else (0, 0.0)
        budget -= kept
        for i, seq in enumerate(self.running):
            if not decoding[i] and budget > 0:
                plan[i] = allowance.limit(min(self._todo(seq), budget), seq.num_computed)
                allowance.spend(plan[i], seq.num_computed)
                budget -= plan[i]
        allowance.release(held)
        return plan, allowance

    @staticmethod
    def _todo(seq: Sequence) -> int:
        # A token still in flight is computed now too: its id comes from the device (overlapped steps).
        return seq.num_tokens + seq.num_inflight - seq.num_computed

    def _continue_all(self, batch: ScheduledBatch, plan: list[int]) -> bool:
        """The common step: the free slots suffice for the whole plan (nothing to evict or preempt), so the
        running requests' slots come from one allocation. False: the request-by-request loop decides."""
        total = sum(plan)
        if not total or total > self.allocator.num_free:
            return False
        slots = self.allocator.alloc(total)
        offset = 0
        for seq, n in zip(self.running, plan):
            if n == 0:
                continue
            mine = slots[offset:offset + n]
            offset += n
            self.table.write(seq.row, seq.num_computed, mine)
            batch.add(seq, seq.num_computed, mine)
            seq.num_computed += n
        return True

    def finish(self, seq: Sequence) -> None:
        """Release a finished (stopped, length, aborted, failed) sequence's slots and row."""
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        if seq.req.status in (RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH):
            self.history.append(seq.num_output)
        self._release(seq, keep_kv=seq.req.status != RequestStatus.FINISHED_ERROR)

    def cache_prompt(self, seq: Sequence) -> None:
        """Hand ``seq``'s computed prompt to the prefix cache while it still runs, so that requests with the
        same prompt (the other choices of an ``n > 1`` request, a shared system prompt) reuse its KV now rather
        than after it finishes. ``seq`` keeps the prompt locked, exactly as if it had matched it on admission."""
        prompt = seq.req.prompt_token_ids
        if self.prefix_cache is None or seq.row < 0 or not seq.num_cached < len(prompt) <= seq.num_computed:
            return
        slots = self.table.slots_of(seq.row, len(prompt))
        known = self.prefix_cache.insert(prompt, slots)
        # What the tree already held beyond our cached part is a duplicate: ours goes, the tree's takes its place.
        self.allocator.free(slots[seq.num_cached:known])
        cached, node = self.prefix_cache.match(prompt)
        self.prefix_cache.lock(node)
        if seq.cache_node is not None:
            self.prefix_cache.unlock(seq.cache_node)
        self.table.write(seq.row, 0, cached)
        seq.cache_node, seq.num_cached = node, cached.numel()

    def num_reclaimable(self) -> int:
        """Slots free now or freeable at once by evicting unused prefix-cache entries."""
        evictable = self.prefix_cache.num_evictable if self.prefix_cache else 0
        return self.allocator.num_free + evictable

    # -- admission -----------------------------------------------------------------------------------

    def _admit(self, seq: Sequence, budget: int, *, batch_empty: bool, allowance: StepAllowance) -> int:
        """Give ``seq`` a row and its cached prefix; returns the tokens it computes this step (0 = not now)."""
        if self.table.num_free_rows == 0:
            return 0
        cached, node = self._match_prefix(seq)
        budget = allowance.limit(min(budget, seq.num_tokens - cached.numel()), cached.numel())
        if budget == 0:
            return 0  # the step's prefill allowance is spent
        n = self._reserve(seq, cached, node, budget, batch_empty=batch_empty)
        if n == 0:
            return 0
        seq.row = self.table.alloc_row()
        self.table.write(seq.row, 0, cached)
        seq.cache_node = node
        seq.num_computed = seq.num_cached = seq.req.num_cached_tokens = cached.numel()
        seq.transition(RequestStatus.RUNNING)
        seq.admitted_at = next(self._admissions)
        return n

    def _reserve(self, seq: Sequence, cached: torch.Tensor, node, budget: int, *, batch_empty: bool) -> int:
        """Lock the reused prefix and make room for the rest; the tokens computed now (0 = not now, unlocked).
        ``budget`` is what the step has left for this request's prompt.

        Room that exists only by evicting this very prefix is no room: the request waits for slots to free.
        """
        todo = seq.num_tokens - cached.numel()
        n = min(todo, budget)
        chunk_ok = n == todo or self.config.enable_chunked_prefill or batch_empty
        fits = not self.running or self._future_peak(extra=(todo, self.estimate_remaining(seq))) <= \
            self._capacity(cached.numel())
        if not (chunk_ok and fits):
            return 0
        # Locked before making room: eviction must never free the prefix this request is about to reuse.
        if node is not None:
            self.prefix_cache.lock(node)
        if self._make_room(n, protect=None):
            return n
        if node is not None:
            self.prefix_cache.unlock(node)
        return 0

    def _match_prefix(self, seq: Sequence):
        if self.prefix_cache is None or seq.req.sampling.prompt_logprobs is not None:
            # Prompt logprobs need the logits of every prompt position: nothing may come from the cache.
            return torch.empty(0, dtype=torch.int64), None
        # At least the last token is computed, so that the step has logits to sample from.
        return self.prefix_cache.match(seq.all_token_ids[:-1])

    def estimate_remaining(self, seq: Sequence) -> int:
        """Output tokens ``seq`` will probably still produce (upper-biased: the longest comparable past one)."""
        produced = seq.num_output
        bound = min(seq.req.sampling.max_tokens, self.max_model_len - len(seq.req.prompt_token_ids))
        if seq.output_bound is not None:
            bound = min(bound, seq.output_bound)
        longer = [n for n in self.history if n > produced]
        estimate = max(longer) if len(self.history) >= 10 and longer else bound
        return max(0, min(estimate, bound) - produced)

    def _future_peak(self, *, extra: tuple[int, int]) -> int:
        """Peak of slots the running requests (plus ``extra`` = (held, to come)) will hold at once."""
        loads = [(s.num_tokens - s.num_cached, self.estimate_remaining(s)) for s in self.running]
        loads.append(extra)
        loads.sort(key=lambda ab: ab[1], reverse=True)
        peak, held = 0, 0
        for i, (a, b) in enumerate(loads, start=1):
            held += a
            peak = max(peak, b * i + held)
        return peak

    def _capacity(self, newly_locked: int) -> int:
        """Slots the running requests and a candidate can use: held by them, free, or evictable."""
        own = sum(s.num_computed - s.num_cached for s in self.running)
        return own + self.num_reclaimable() - newly_locked

    # -- slots -----------------------------------------------------------------------------------

    def _make_room(self, n: int, *, protect: Sequence | None) -> bool:
        """Ensure ``n`` free slots by evicting cache entries, then (for running work) preempting the newest.

        Returns False if ``protect`` itself had to be preempted, or if no room can be made for a new request.
        """
        while self.allocator.num_free < n:
            if self.prefix_cache is not None and self.prefix_cache.evict(n - self.allocator.num_free):
                continue
            if protect is None or not self.running:
                return False
            victim = max(self.running, key=lambda s: s.admitted_at)
            self._preempt(victim)
            if victim is protect:
                return False
        return True

    def _alloc(self, seq: Sequence, n: int) -> torch.Tensor:
        slots = self.allocator.alloc(n)
        self.table.write(seq.row, seq.num_computed, slots)
        seq.num_computed += n
        return slots

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self._release(seq, keep_kv=True)
        seq.transition(RequestStatus.WAITING)  # preemption: the one move back
        self.waiting.appendleft(seq)
        self.num_preemptions += 1

    def _release(self, seq: Sequence, *, keep_kv: bool) -> None:
        if seq.row < 0:
            return
        slots = self.table.slots_of(seq.row, seq.num_computed)
        if self.prefix_cache is not None and keep_kv:
            # The tree adopts what it lacks; what it already had beyond our cached prefix is a duplicate.
            known = self.prefix_cache.insert(seq.all_token_ids[:seq.num_computed], slots)
            self.allocator.free(slots[seq.num_cached:known])
        else:
            self.allocator.free(slots[seq.num_cached:])
        if seq.cache_node is not None:
            self.prefix_cache.unlock(seq.cache_node)
        self.table.free_row(seq.row)
        seq.row, seq.num_computed, seq.num_cached, seq.cache_node = -1, 0, 0, None
