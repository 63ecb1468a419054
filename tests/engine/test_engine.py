"""The engine end to end with the default model: exactness against transformers, batching, KV accounting."""
from __future__ import annotations

import pytest

from lightllm_struct.errors import InvalidRequestError, PromptTooLongError
from lightllm_struct.request import Request, RequestStatus, SamplingParams
from tests.engine.conftest import assert_kv_pool_full, hf_greedy

GREEDY64 = SamplingParams(temperature=0, max_tokens=64, ignore_eos=True)
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "Once upon a time, in a small village by the sea,",
    '{"name": "Alice", "age": 30, "city": "',
    "Translate to French: Good morning, how are you?",
    "List three colors:\n1.",
    "Q: What is 12 + 30?\nA:",
    "The quick brown fox",
]


def test_greedy_equals_transformers_generate(llm, hf_reference):
    prompts = PROMPTS[:4] + [llm.tokenizer.apply_chat_template([{"role": "user", "content": "Name a planet."}])]
    outs = llm.generate(prompts, GREEDY64)
    for prompt, out in zip(prompts, outs):
        expected = hf_greedy(hf_reference, out.prompt_token_ids, 64)
        assert out.token_ids == expected, prompt
        assert out.finish_reason == "length" and out.num_output_tokens == 64
    assert_kv_pool_full(llm.engine)


def test_batch_of_8_equals_each_alone(llm):
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    together = llm.generate(PROMPTS, params)
    llm.engine.flush_prefix_cache()
    alone = [llm.generate(p, params)[0] for p in PROMPTS]
    assert [o.token_ids for o in together] == [o.token_ids for o in alone]
    assert len({tuple(o.token_ids) for o in together}) == len(PROMPTS)  # a real, varied batch
    assert_kv_pool_full(llm.engine)


def test_text_is_detokenized_output(llm):
    out = llm.generate("Write the word café three times:", SamplingParams(temperature=0, max_tokens=20))[0]
    assert out.text == llm.tokenizer.decode(out.token_ids)


def test_continuous_batching_requests_join_while_others_run(llm):
    engine, tok = llm.engine, llm.tokenizer
    first = Request(prompt_token_ids=tok.encode(PROMPTS[0]), sampling=SamplingParams(temperature=0, max_tokens=30,
                                                                                     ignore_eos=True))
    engine.add_request(first)
    for _ in range(5):
        engine.step()
    late = Request(prompt_token_ids=tok.encode(PROMPTS[2]), sampling=SamplingParams(temperature=0, max_tokens=10,
                                                                                    ignore_eos=True))
    engine.add_request(late)
    batch_sizes, finals = [], {}
    while engine.has_unfinished():
        batch_sizes.append(len(engine.scheduler.running))
        finals.update({o.request_id: o for o in engine.step() if o.finished})
    assert max(batch_sizes) == 2  # the late request ran beside the first, not after it
    assert finals[late.request_id].token_ids == llm.generate(PROMPTS[2], late.sampling)[0].token_ids
    assert finals[first.request_id].token_ids == llm.generate(PROMPTS[0], first.sampling)[0].token_ids
    assert_kv_pool_full(engine)


def test_abort_frees_slots_and_others_continue(llm):
    engine, tok = llm.engine, llm.tokenizer
    reqs = [Request(prompt_token_ids=tok.encode(p), sampling=SamplingParams(temperature=0, max_tokens=12,
                                                                           ignore_eos=True)) for p in PROMPTS[:3]]
    for r in reqs:
        engine.add_request(r)
    engine.step()
    engine.step()
    engine.abort_request(reqs[1].request_id)
    finals = {}
    while engine.has_unfinished():
        finals.update({o.request_id: o for o in engine.step() if o.finished})
    assert finals[reqs[1].request_id].finish_reason == "abort"
    assert [finals[r.request_id].num_output_tokens for r in (reqs[0], reqs[2])] == [12, 12]
    assert_kv_pool_full(engine)


def test_error_in_one_request_never_loses_others(llm, caplog):
    engine, tok = llm.engine, llm.tokenizer
    bad = Request(prompt_token_ids=tok.encode(PROMPTS[3]), sampling=SamplingParams(temperature=0, max_tokens=8))
    good = Request(prompt_token_ids=tok.encode(PROMPTS[4]), sampling=SamplingParams(temperature=0, max_tokens=8,
                                                                                    ignore_eos=True))
    engine.add_request(bad)
    engine.add_request(good)
    seq = engine._seqs[bad.request_id]

    class Exploding:
        def step(self, token_id):
            raise RuntimeError("detokenizer broke")

    seq.detokenizer = Exploding()
    finals = {}
    while engine.has_unfinished():
        finals.update({o.request_id: o for o in engine.step() if o.finished})
    # The caller sees a stable message without Python internals; the details go to the engine's log.
    assert finals[bad.request_id].finish_reason == "error"
    assert "the engine failed on this request" in finals[bad.request_id].error
    assert "detokenizer broke" not in finals[bad.request_id].error and "detokenizer broke" in caplog.text
    assert bad.status == RequestStatus.FINISHED_ERROR
    assert finals[good.request_id].num_output_tokens == 8 and finals[good.request_id].finish_reason == "length"
    assert_kv_pool_full(engine)


def test_invalid_requests_are_refused_at_the_edge(llm):
    engine = llm.engine
    with pytest.raises(PromptTooLongError):
        engine.add_request(Request(prompt_token_ids=[1] * engine.max_model_len, sampling=SamplingParams()))
    with pytest.raises(InvalidRequestError):
        engine.add_request(Request(prompt_token_ids=[], sampling=SamplingParams()))
    with pytest.raises(InvalidRequestError):
        engine.add_request(Request(prompt_token_ids=[10**9], sampling=SamplingParams()))
    assert not engine.has_unfinished()


def test_prefix_cache_reuses_a_shared_prompt(llm):
    prefix = "You are a careful assistant. Answer briefly and precisely. " * 4
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    first = llm.generate(prefix + "What is 2+2?", params)[0]
    second = llm.generate(prefix + "What is 3+5?", params)[0]
    assert first.num_cached_tokens == 0 and second.num_cached_tokens >= 40
    llm.engine.flush_prefix_cache()
    assert llm.generate(prefix + "What is 3+5?", params)[0].token_ids == second.token_ids
    assert_kv_pool_full(llm.engine)
