"""The offline API through the real default model: chat template, seeds, top-k, stop strings, lengths."""
from __future__ import annotations

import pytest

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.llm import LLM
from lightllm_struct.request import INT32_MAX, INT64_MAX, INT64_MIN, SamplingParams


@pytest.fixture(scope="module")
def llm():
    llm = LLM(device="cpu", num_kv_slots=4096, max_num_seqs=8)
    yield llm
    llm.engine.shutdown()


def test_chat_uses_the_chat_template(llm):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = llm.chat(messages, SamplingParams(temperature=0, max_tokens=16))[0]
    prompt = llm.tokenizer.apply_chat_template(messages)
    assert out.prompt == prompt and prompt.endswith("<|im_start|>assistant\n")
    assert out.prompt_token_ids == llm.tokenizer.encode(prompt, add_special_tokens=False)
    assert "Paris" in out.text and out.finish_reason == "stop"


def test_seeded_sampling_is_reproducible_alone_and_in_a_batch(llm):
    params = SamplingParams(temperature=1.0, max_tokens=20, seed=1234, ignore_eos=True)
    a = llm.generate("Once upon a time", params)[0]
    b = llm.generate(["The sky is", "Once upon a time", "1, 2, 3,"], params)[1]
    assert a.token_ids == b.token_ids
    other = llm.generate("Once upon a time", SamplingParams(temperature=1.0, max_tokens=20, seed=99,
                                                            ignore_eos=True))[0]
    assert other.token_ids != a.token_ids


def test_top_k_one_is_greedy_and_top_p_narrows_choices(llm):
    greedy = llm.generate("The best fruit is", SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0]
    top1 = llm.generate("The best fruit is", SamplingParams(temperature=1.5, top_k=1, seed=5, max_tokens=12,
                                                            ignore_eos=True))[0]
    assert top1.token_ids == greedy.token_ids
    tiny_p = llm.generate("The best fruit is", SamplingParams(temperature=1.5, top_p=1e-6, seed=5, max_tokens=12,
                                                              ignore_eos=True))[0]
    assert tiny_p.token_ids == greedy.token_ids
    hot = [llm.generate("The best fruit is", SamplingParams(temperature=1.5, seed=s, max_tokens=12,
                                                            ignore_eos=True))[0].token_ids for s in range(3)]
    assert any(h != greedy.token_ids for h in hot)


def test_stop_string_and_max_tokens_end_to_end(llm):
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    full = llm.generate("List the days of the week: Monday,", params)[0]
    assert full.finish_reason == "length" and full.num_output_tokens == 40
    words = full.text.split()
    stop = words[len(words) // 2]
    cut = llm.generate("List the days of the week: Monday,", SamplingParams(temperature=0, max_tokens=40,
                                                                            stop=[stop], ignore_eos=True))[0]
    assert cut.finish_reason == "stop" and cut.stop_reason == stop
    assert cut.text == full.text[:full.text.index(stop)] and stop not in cut.text


def test_bad_arguments(llm):
    with pytest.raises(InvalidRequestError):
        llm.generate(["a", "b"], [SamplingParams()])
    assert not llm.engine.has_unfinished()


def test_extreme_values_never_fail_a_step(llm):
    """The extremes that are allowed run in one batch beside an ordinary request, and all finish."""
    last = llm.tokenizer.vocab_size - 1
    extremes = [SamplingParams(seed=INT64_MAX, top_k=INT32_MAX, max_tokens=3, ignore_eos=True,
                               repetition_penalty=100, presence_penalty=-2, frequency_penalty=2),
                SamplingParams(seed=INT64_MIN, top_k=1, temperature=1e6, max_tokens=3, ignore_eos=True, min_p=1,
                               logit_bias={last: -100, 0: 100}),
                SamplingParams(seed=-1, top_p=1e-9, temperature=1e-9, max_tokens=3, ignore_eos=True, logprobs=20,
                               prompt_logprobs=20, stop_token_ids=(0, INT32_MAX), logprobs_mode="raw_logprobs"),
                SamplingParams(temperature=0, max_tokens=3, min_tokens=3, repetition_penalty=0.01,
                               logit_bias={last: 100}, logprobs=0),
                SamplingParams(temperature=0, max_tokens=3, ignore_eos=True)]
    outs = llm.generate(["Hello"] * len(extremes), extremes)
    assert [o.finish_reason for o in outs] == ["length"] * len(extremes)
    assert all(o.num_output_tokens == 3 for o in outs)


def test_generate_and_chat_take_schema_regex_grammar_choices(llm):
    import json
    import re

    import jsonschema
    from lark import Lark
    from pydantic import BaseModel, Field

    from lightllm_struct import Constraint

    class City(BaseModel):
        name: str = Field(max_length=16)
        population: int = Field(ge=0, le=10**9)

    sp = SamplingParams(temperature=0, max_tokens=60)
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
              "additionalProperties": False}
    for given in (schema, json.dumps(schema)):
        jsonschema.validate(json.loads(llm.generate("Answer:", sp, schema=given)[0].text), schema)
    city = llm.chat([{"role": "user", "content": "A city as JSON."}], sp, schema=City)[0]
    City.model_validate_json(city.text)
    assert re.fullmatch(r"[0-9]{3}", llm.generate(["Digits:"], sp, regex=r"[0-9]{3}")[0].text)
    grammar = 'start: "a" | "b" "c"'
    Lark(grammar).parse(llm.generate("x", sp, grammar=grammar)[0].text)
    outs = llm.chat([[{"role": "user", "content": "yes or no?"}]] * 2, sp, choices=["yes", "no"])
    assert all(o.text in ("yes", "no") for o in outs)
    general = llm.generate("Answer:", sp, constraints=Constraint(kind="regex", spec="(yes|no)"))[0]
    assert general.text in ("yes", "no")
    with pytest.raises(InvalidRequestError):
        llm.generate("x", sp, regex="a", choices=["a"])
    with pytest.raises(InvalidRequestError):
        llm.generate("x", sp, regex="a", constraints=Constraint(kind="regex", spec="b"))
