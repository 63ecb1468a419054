"""Engine log-probabilities against transformers' model, masked renormalisation under a constraint, and the
prompt of a running request shared with a sibling through the prefix cache."""
from __future__ import annotations

import math

import pytest
import torch

from lightllm_struct.request import Constraint, Request, SamplingParams
from tests.engine.conftest import assert_kv_pool_full


def _run(engine, reqs, *, stagger=False):
    finals = {}
    for i, req in enumerate(reqs):
        engine.add_request(req)
        if stagger and i == 0:
            finals.update({o.request_id: o for o in engine.step() if o.finished})
    while engine.has_unfinished():
        finals.update({o.request_id: o for o in engine.step() if o.finished})
    return [finals[r.request_id] for r in reqs]


def test_prompt_and_greedy_logprobs_equal_transformers(llm, hf_reference):
    ids = llm.tokenizer.encode("The quick brown fox")
    out, = _run(llm.engine, [Request(prompt_token_ids=ids, sampling=SamplingParams(
        temperature=0, max_tokens=3, logprobs=2, prompt_logprobs=1, ignore_eos=True))])
    with torch.inference_mode():
        ref = hf_reference(torch.tensor([ids + out.token_ids])).logits[0].float().log_softmax(-1)
    all_ids = ids + out.token_ids
    got = [e.logprob for e in out.prompt_logprobs[1:]] + [e.logprob for e in out.logprobs]
    expected = [float(ref[i - 1, all_ids[i]]) for i in range(1, len(all_ids))]
    assert out.prompt_logprobs[0] is None
    assert got == pytest.approx(expected, abs=2e-3)
    for e in out.logprobs:  # greedy: the chosen token heads its own top list
        assert e.top[0][0] == e.token_id and len(e.top) == 2


def test_constrained_logprobs_are_renormalised_over_the_allowed_tokens(llm):
    ids = llm.tokenizer.encode("Is the sky blue?")
    out, = _run(llm.engine, [Request(prompt_token_ids=ids, constraint=Constraint("choice", ["yes", "no"]),
                                     sampling=SamplingParams(temperature=0.8, seed=2, logprobs=20, max_tokens=4))])
    first = out.logprobs[0]
    allowed = [(t, lp) for t, lp in first.top if lp > -9999]
    assert all("yes".startswith(llm.tokenizer.decode([t])) or "no".startswith(llm.tokenizer.decode([t]))
               for t, _ in allowed)
    assert math.isclose(sum(math.exp(lp) for _, lp in allowed), 1.0, abs_tol=1e-4)


def test_a_running_prompt_is_shared_with_a_later_sibling(llm):
    engine = llm.engine
    ids = llm.tokenizer.encode("A shared prompt about the sea, the sky and the mountains " * 3)
    first = Request(prompt_token_ids=ids, sampling=SamplingParams(max_tokens=6, seed=1, ignore_eos=True))
    second = Request(prompt_token_ids=list(ids), sampling=SamplingParams(max_tokens=6, seed=2, ignore_eos=True))
    outs = _run(engine, [first, second], stagger=True)
    assert outs[1].num_cached_tokens == len(ids) - 1  # all but the last prompt token came from the cache
    assert_kv_pool_full(engine)
