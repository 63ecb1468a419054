"""The scheduler alone (no model): token budget, chunked prefill, admission by future peak, preemption."""
from __future__ import annotations

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.kv_cache import ReqToTokenTable, SlotAllocator
from lightllm_struct.engine.prefix_cache import PrefixCache
from lightllm_struct.engine.scheduler import Scheduler
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.request import Request, RequestStatus, SamplingParams


def _scheduler(slots=64, *, prefix=False, **cfg):
    config = EngineConfig(**{"max_num_seqs": 4, "max_num_batched_tokens": 16, **cfg})
    alloc = SlotAllocator(slots)
    table = ReqToTokenTable(max_rows=config.max_num_seqs, max_seq_len=slots)
    return Scheduler(config, allocator=alloc, table=table, prefix_cache=PrefixCache(alloc) if prefix else None,
                     max_model_len=slots)


def _seq(prompt_len, max_tokens, first=100):
    req = Request(prompt_token_ids=list(range(first, first + prompt_len)),
                  sampling=SamplingParams(max_tokens=max_tokens))
    return Sequence(req=req, seed=0, detokenizer=None)


def _finish_sampled(sched, batch, token=7):
    """Play the engine's part: one token to each sampling sequence, finish those at max_tokens."""
    for seq in batch.sampled:
        seq.req.output_token_ids.append(token)
        if seq.num_output >= seq.req.sampling.max_tokens:
            seq.finish(RequestStatus.FINISHED_LENGTH)
            sched.finish(seq)


def test_budget_chunks_long_prompts_and_mixes_prefill_with_decode():
    sched = _scheduler()
    a, b = _seq(10, 3), _seq(30, 2, first=500)
    sched.add(a)
    sched.add(b)
    batch = sched.schedule()
    assert batch.lens == [10, 6] and batch.sampled == [a]  # b's prompt is split by the 16-token budget
    _finish_sampled(sched, batch)
    batch = sched.schedule()
    assert batch.seqs == [a, b] and batch.lens == [1, 15] and batch.sampled == [a]
    _finish_sampled(sched, batch)
    batch = sched.schedule()
    assert batch.lens == [1, 9] and batch.sampled == [a, b]  # decode and the last prefill chunk together


def test_all_slots_return_after_everything_finishes():
    sched = _scheduler()
    seqs = [_seq(5 + i, 4, first=10 * i) for i in range(6)]
    for s in seqs:
        sched.add(s)
    while sched.has_work():
        _finish_sampled(sched, sched.schedule())
    assert sched.allocator.num_free == 64 and sched.table.num_free_rows == 4
    assert list(sched.history) == [4] * 6


def test_future_peak_formula():
    sched = _scheduler()
    # (held, to come) sorted by to-come: (2, 10), (5, 4), (3, 1) -> max(10*1+2, 4*2+7, 1*3+10) = 15
    a, b = _seq(2, 10), _seq(5, 4)
    for s in (a, b):
        sched.running.append(s)
    assert sched._future_peak(extra=(3, 1)) == 15


def test_admission_waits_when_the_future_peak_would_not_fit():
    sched = _scheduler(slots=40)
    big = _seq(4, 30)
    sched.add(big)
    _finish_sampled(sched, sched.schedule())
    late = _seq(4, 30, first=300)
    sched.add(late)
    batch = sched.schedule()
    assert batch.seqs == [big] and late.status == RequestStatus.WAITING  # 35 + 34 > 40: not admitted yet


def test_estimates_use_history_and_max_tokens():
    sched = _scheduler()
    s = _seq(4, 100)
    assert sched.estimate_remaining(s) == 60  # no history yet: max_tokens capped by max_model_len - prompt
    sched.history.extend([5] * 20 + [12])
    assert sched.estimate_remaining(s) == 12
    s.output_bound = 3
    assert sched.estimate_remaining(s) == 3


def test_out_of_slots_preempts_the_newest_and_it_completes_later():
    sched = _scheduler(slots=24, prefix=True)
    sched.history.extend([2] * 20)  # optimistic history: both get admitted, then outgrow the pool
    a, b = _seq(6, 12), _seq(6, 12, first=400)
    sched.add(a)
    sched.add(b)
    steps = 0
    while sched.has_work():
        _finish_sampled(sched, sched.schedule())
        steps += 1
        assert steps < 200
    assert sched.num_preemptions >= 1
    assert a.num_output == b.num_output == 12
    sched.prefix_cache.flush()
    assert sched.allocator.num_free == 24


def test_making_room_never_evicts_the_prefix_being_reused():
    sched = _scheduler(slots=20, prefix=True, max_num_batched_tokens=32)
    prompt = list(range(100, 118))                      # 18 tokens; the first 10 are cached
    sched.prefix_cache.insert(prompt[:10], sched.allocator.alloc(10))
    held = sched.allocator.alloc(4)                     # someone else's: 6 free, 8 needed beyond the prefix
    seq = Sequence(req=Request(prompt_token_ids=prompt, sampling=SamplingParams(max_tokens=1)), seed=0,
                   detokenizer=None)
    sched.add(seq)
    # Room exists only by evicting the very prefix the request reuses: it waits, and the prefix stays.
    assert sched.schedule().sampled == []
    assert seq.req.status == RequestStatus.WAITING and sched.prefix_cache.num_cached == 10
    assert sched.prefix_cache.num_locked == 0
    sched.allocator.free(held)
    assert sched.schedule().sampled == [seq]
    assert seq.num_cached == 10 and len(set(sched.table.slots_of(seq.row, 18).tolist())) == 18


def test_a_reused_prefix_stays_cached_while_room_is_made_elsewhere():
    sched = _scheduler(slots=24, prefix=True, max_num_batched_tokens=32)
    shared, other = list(range(100, 110)), list(range(500, 506))
    sched.prefix_cache.insert(shared, sched.allocator.alloc(10))
    sched.prefix_cache.insert(other, sched.allocator.alloc(6))   # older entry, evictable
    sched.prefix_cache.match(shared)                               # make `shared` the most recent
    seq = Sequence(req=Request(prompt_token_ids=shared + list(range(200, 212)),
                               sampling=SamplingParams(max_tokens=1)), seed=0, detokenizer=None)
    sched.add(seq)
    sched.schedule()
    assert seq.num_cached == 10 and sched.prefix_cache.num_locked == 10
