"""The prefill bound beside decodes: its cost model, its allowance, and what the scheduler runs each step under it."""
from __future__ import annotations

import pytest

from lightllm_struct.config import ConfigError, EngineConfig
from lightllm_struct.engine.kv_cache import ReqToTokenTable, SlotAllocator
from lightllm_struct.engine.prefill_budget import PrefillBudget
from lightllm_struct.engine.scheduler import Scheduler
from lightllm_struct.request import RequestStatus
from tests.engine.test_scheduler import _finish_sampled as _play  # the engine's part, shared with the scheduler tests
from tests.engine.test_scheduler import _seq


def _scheduler(slots=8192, *, budget=None, attention_context=512, **cfg):
    config = EngineConfig(**{"max_num_seqs": 8, "max_num_batched_tokens": 512, **cfg})
    alloc = SlotAllocator(slots)
    table = ReqToTokenTable(max_rows=config.max_num_seqs, max_seq_len=slots)
    return Scheduler(config, allocator=alloc, table=table, prefix_cache=None, max_model_len=slots,
                     prefill_budget=PrefillBudget(budget=budget, attention_context=attention_context))


def _start_decoders(sched, count):
    decoders = [_seq(6, 300, first=10 * i) for i in range(count)]
    for d in decoders:
        sched.add(d)
    _play(sched, sched.schedule())  # their prompts, in one step
    assert all(d.num_output == 1 for d in decoders)
    return decoders


def test_the_allowance_gives_the_largest_chunk_within_it():
    policy = PrefillBudget(budget=300, attention_context=128)
    for context in (0, 1, 50, 127, 128, 1000, 5000):
        for left in (1.0, 2.5, 37.0, 300.0):
            allowance = policy.for_step(decoding=True)
            allowance.spent_any, allowance.left = True, left
            n = allowance.limit(10_000, context)
            best = max((m for m in range(0, 400) if policy.cost(m, context) <= left), default=0)
            assert n == best, (context, left)
    assert policy.cost(10, 90) == pytest.approx(10 * (1 + 100 / 128))


def test_the_first_chunk_of_a_step_gets_a_token_however_long_the_context():
    allowance = PrefillBudget(budget=4, attention_context=16).for_step(decoding=True)
    assert allowance.limit(100, 10_000) == 1  # one token there costs 626 > 4: still, it progresses
    allowance.spend(1, 10_000)
    assert allowance.left == 0 and allowance.limit(100, 0) == 0


def test_unbounded_without_decodes_or_budget():
    assert PrefillBudget(budget=8).for_step(decoding=False).limit(5000, 4000) == 5000
    assert PrefillBudget(budget=None).for_step(decoding=True).limit(5000, 4000) == 5000


def test_defaults_bound_the_cpu_and_leave_cuda_at_the_step_budget():
    config = EngineConfig()
    assert PrefillBudget.from_config(config, device_type="cpu").budget == 256
    assert PrefillBudget.from_config(config, device_type="cuda").budget is None
    set_ = EngineConfig(prefill_budget_while_decoding=64, prefill_attention_context=100)
    policy = PrefillBudget.from_config(set_, device_type="cuda")
    assert (policy.budget, policy.attention_context) == (64, 100)
    # Unsplittable prompts must never wait for an allowance smaller than they are.
    unchunked = EngineConfig(enable_chunked_prefill=False, prefill_budget_while_decoding=64)
    assert PrefillBudget.from_config(unchunked, device_type="cpu").budget is None
    with pytest.raises(ConfigError):
        EngineConfig(prefill_budget_while_decoding=0)
    with pytest.raises(ConfigError):
        EngineConfig(prefill_attention_context=0)


def test_a_long_prompt_beside_decodes_runs_in_bounded_chunks_and_finishes():
    sched = _scheduler(budget=64, attention_context=512)
    decoders = _start_decoders(sched, 3)
    long = _seq(3000, 2, first=900)
    sched.add(long)
    chunks, steps = [], 0
    while long.num_output == 0:
        batch = sched.schedule()
        steps += 1
        rows = dict(zip(map(id, batch.seqs), zip(batch.starts, batch.lens)))
        # Every decoding request runs every step, one token each.
        assert all(rows.get(id(d), (None, 0))[1] == 1 for d in decoders)
        start, n = rows[id(long)]
        assert sched.prefill_budget.cost(n, start) <= 64
        chunks.append((start, n))
        _play(sched, batch)
    assert sum(n for _, n in chunks) == 3000 and chunks[0] == (0, 57)  # 57 * (1 + 57/512) = 63.3
    # Later chunks are smaller: their attention reads the whole context before them.
    assert chunks[-2][1] < chunks[0][1] / 4
    assert long.status == RequestStatus.RUNNING and all(d.num_output == 1 + steps for d in decoders)


def test_a_long_prompt_alone_prefills_at_the_full_step_budget():
    sched = _scheduler(budget=64)
    long = _seq(1300, 1)
    sched.add(long)
    lens = []
    while long.num_output == 0:
        batch = sched.schedule()
        lens.append(batch.lens)
        _play(sched, batch)
    assert lens == [[512], [512], [276]]


def test_streams_arriving_beside_a_long_prompt_get_in_and_keep_their_tokens():
    """A long prompt admitted before the streams takes neither the step budget nor the admissions from them."""
    sched = _scheduler(budget=None, max_num_batched_tokens=64)
    long = _seq(1000, 1)
    sched.add(long)
    _play(sched, sched.schedule())  # its first 64 tokens, alone
    late = [_seq(4, 100, first=3000 + 10 * i) for i in range(3)]
    for d in late:
        sched.add(d)
    batch = sched.schedule()  # half the budget kept for the waiting: they are admitted beside the chunk
    assert batch.seqs == [long, *late] and batch.lens == [32, 4, 4, 4]
    _play(sched, batch)
    for _ in range(5):
        batch = sched.schedule()
        assert batch.seqs == [long, *late] and batch.lens == [64 - 3, 1, 1, 1]  # decodes planned first
        _play(sched, batch)


def test_waiting_requests_are_admitted_beside_a_long_prompts_chunks():
    sched = _scheduler(budget=64, attention_context=512)
    _start_decoders(sched, 2)
    long = _seq(4000, 1, first=900)
    sched.add(long)
    _play(sched, sched.schedule())
    short = _seq(12, 3, first=4000)
    sched.add(short)
    batch = sched.schedule()
    assert short in batch.seqs and batch.lens[batch.seqs.index(short)] == 12


def test_long_prompt_chunks_free_every_slot_at_the_end():
    sched = _scheduler(slots=4096, budget=32, attention_context=256)
    decoders = _start_decoders(sched, 2)
    long = _seq(2500, 3, first=700)
    sched.add(long)
    while long.status != RequestStatus.FINISHED_LENGTH:
        _play(sched, sched.schedule())
    for d in decoders:
        if not d.finished:
            d.finish(RequestStatus.FINISHED_ABORTED)
            sched.finish(d)
    assert not sched.has_work() and sched.allocator.num_free == 4096
