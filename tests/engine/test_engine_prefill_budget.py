"""A long prompt prefilled in bounded chunks beside a stream, with the default model: same greedy output, and the
stream gets a token every step."""
from __future__ import annotations

from lightllm_struct.engine.prefill_budget import PrefillBudget
from lightllm_struct.request import Request, SamplingParams
from tests.engine.conftest import assert_kv_pool_full

LONG = " ".join(f"Item {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7 % 11} stones." for i in range(60))


def test_a_chunked_long_prompt_beside_a_stream_gives_the_unchunked_greedy_output(llm):
    engine, tok = llm.engine, llm.tokenizer
    prompt = tok.encode(LONG + "\nHow many stones does item 12 hold?")
    assert 700 < len(prompt) < 1024  # one chunk of the fixture's 1,024-token step budget when unbounded
    greedy = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    saved = engine.scheduler.prefill_budget
    try:
        engine.scheduler.prefill_budget = PrefillBudget(budget=None)
        whole = llm.generate([prompt], greedy)[0]
        engine.flush_prefix_cache()
        engine.scheduler.prefill_budget = PrefillBudget(budget=48, attention_context=256)
        stream = Request(prompt_token_ids=tok.encode("Count to fifty:"),
                         sampling=SamplingParams(temperature=0, max_tokens=400, ignore_eos=True))
        engine.add_request(stream)
        for _ in range(3):
            engine.step()
        long = Request(prompt_token_ids=prompt, sampling=greedy)
        engine.add_request(long)
        chunks, finals = [], {}
        while long.request_id not in finals:
            before = (len(stream.output_token_ids), _computed(engine, long))
            finals.update({o.request_id: o for o in engine.step() if o.finished})
            assert len(stream.output_token_ids) == before[0] + 1  # the stream never skips a step
            if long.request_id not in finals and _computed(engine, long) <= len(prompt):
                chunks.append(_computed(engine, long) - before[1])
        engine.abort_request(stream.request_id)
        engine.step()
    finally:
        engine.scheduler.prefill_budget = saved
    assert len(chunks) > 10 and max(chunks) <= 48 and sum(chunks) == len(prompt)
    assert finals[long.request_id].token_ids == whole.token_ids
    assert_kv_pool_full(engine)


def _computed(engine, req: Request) -> int:
    return next((s.num_computed for s in engine.scheduler.running if s.req is req), 0)
