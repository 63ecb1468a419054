"""The OpenAI API surface end to end with the official client: n, logprobs, echo, penalties, logit_bias,
prompt lists, /tokenize; log-probabilities and penalties checked against transformers' model."""
from __future__ import annotations

import json
import math

import httpx
import jsonschema
import openai
import pytest
import torch

from lightllm_struct.kernels.reference import SparsePenalties
from lightllm_struct.kernels.reference import apply_penalties as apply_penalties_reference
from tests.support import transformers_default_model

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120}},
          "required": ["name", "age"], "additionalProperties": False}
MSG = [{"role": "user", "content": "Give me a person as JSON."}]


@pytest.fixture(scope="module")
def hf():
    return transformers_default_model()


def _hf_logprobs(hf, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return hf(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def test_n_choices_each_valid_with_logprobs_and_reproducible(server, openai_client):
    kw = dict(model=server.model, messages=MSG, n=3, temperature=1.0, seed=11, max_tokens=60, logprobs=True,
              top_logprobs=2, response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}})
    r = openai_client.chat.completions.create(**kw)
    assert [c.index for c in r.choices] == [0, 1, 2]
    for c in r.choices:
        jsonschema.validate(json.loads(c.message.content), SCHEMA)
        entries = c.logprobs.content
        assert "".join(e.token for e in entries) == c.message.content
        for e in entries:
            assert len(e.top_logprobs) == 2 and e.logprob <= 0
            assert sum(math.exp(t.logprob) for t in e.top_logprobs) <= 1 + 1e-4  # masked, renormalised
            assert bytes(e.bytes).decode("utf-8", "replace") == e.token
    assert len({c.message.content for c in r.choices}) > 1  # independent draws
    assert r.usage.completion_tokens == sum(len(c.logprobs.content) for c in r.choices)
    again = openai_client.chat.completions.create(**kw)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]


def test_echo_logprobs_match_transformers(server, openai_client, hf):
    prompt = "The capital of France is"
    r = openai_client.completions.create(model=server.model, prompt=prompt, max_tokens=3, temperature=0, echo=True,
                                         logprobs=1)
    choice = r.choices[0]
    assert choice.text.startswith(prompt)
    lp = choice.logprobs
    ids = httpx.post(server.url + "/tokenize", json={"prompt": prompt}).json()["tokens"]
    assert lp.token_logprobs[0] is None and len(lp.tokens) == len(ids) + 3
    assert lp.text_offset[:2] == [0, len(lp.tokens[0])]
    out_ids = httpx.post(server.url + "/tokenize", json={"prompt": choice.text}).json()["tokens"]
    ref = _hf_logprobs(hf, out_ids[:len(ids) + 3])
    expected = [float(ref[i - 1, out_ids[i]]) for i in range(1, len(ids) + 3)]
    assert lp.token_logprobs[1:] == pytest.approx(expected, abs=2e-3)
    # Greedy and unconstrained: the reported top token is the one chosen.
    for tok, top in zip(lp.tokens[len(ids):], lp.top_logprobs[len(ids):]):
        assert list(top) == [tok]


def test_processed_and_raw_logprobs_under_a_constraint(server):
    body = {"model": server.model, "messages": MSG, "max_tokens": 3, "logprobs": True, "top_logprobs": 5,
            "structured_outputs": {"choice": ["yes", "no"]}, "temperature": 0.7, "seed": 1}
    first = httpx.post(server.base_url + "/chat/completions", json=body, timeout=120).json()
    raw = httpx.post(server.base_url + "/chat/completions", json={**body, "logprobs_mode": "raw_logprobs"},
                     timeout=120).json()
    entry, raw_entry = first["choices"][0]["logprobs"]["content"][0], raw["choices"][0]["logprobs"]["content"][0]
    assert first["choices"][0]["message"]["content"] in ("yes", "no")
    allowed = [t for t in entry["top_logprobs"] if t["logprob"] > -9999]
    assert all("yes".startswith(t["token"]) or "no".startswith(t["token"]) for t in allowed)  # the mask's
    assert sum(math.exp(t["logprob"]) for t in allowed) == pytest.approx(1.0, abs=1e-3)
    assert raw_entry["logprob"] < entry["logprob"]  # the model's own, not renormalised over two choices


def test_streamed_n_choices_carry_index_and_logprobs(server, openai_client):
    stream = openai_client.chat.completions.create(model=server.model, messages=MSG, n=2, max_tokens=8, seed=3,
                                                   logprobs=True, stream=True, temperature=1.0)
    text, tokens, reasons = {0: "", 1: ""}, {0: "", 1: ""}, {}
    for chunk in stream:
        for c in chunk.choices:
            text[c.index] += c.delta.content or ""
            tokens[c.index] += "".join(e.token for e in (c.logprobs.content if c.logprobs else []))
            if c.finish_reason:
                reasons[c.index] = c.finish_reason
    assert set(reasons) == {0, 1}
    assert text == tokens


def test_prompt_lists_and_token_ids_are_one_batch(server, openai_client):
    r = openai_client.completions.create(model=server.model, prompt=["Hello", "Once upon a time"], n=2,
                                         max_tokens=4, seed=5)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    ids = httpx.post(server.url + "/tokenize", json={"prompt": "Hello"}).json()["tokens"]
    r2 = openai_client.completions.create(model=server.model, prompt=[ids, ids], max_tokens=4, temperature=0)
    assert len(r2.choices) == 2 and r2.choices[0].text == r2.choices[1].text
    chunks = list(openai_client.completions.create(model=server.model, prompt="Hi", max_tokens=4, logprobs=0,
                                                    echo=True, stream=True, temperature=0))
    assert "".join(c.choices[0].text for c in chunks).startswith("Hi")


def _hf_greedy_with_penalties(hf, prompt_ids, n, *, presence, frequency, repetition, bias):
    out: list[int] = []
    for _ in range(n):
        with torch.inference_mode():
            logits = hf(torch.tensor([prompt_ids + out])).logits[0, -1:].float().clone()
        seen = set(prompt_ids + out)
        entries = {t: (float(out.count(t)), 1.0, float(bias.get(t, 0.0))) for t in seen}
        entries.update({t: (0.0, 0.0, b) for t, b in bias.items() if t not in seen})
        pen = SparsePenalties.from_rows([entries], [(repetition, frequency, presence)])
        with torch.inference_mode():
            out.append(int(apply_penalties_reference(logits, pen).argmax()))
    return out


def test_penalties_and_logit_bias_match_the_torch_reference(server, openai_client, hf):
    prompt = "one one one one one"
    ids = httpx.post(server.url + "/tokenize", json={"prompt": prompt}).json()["tokens"]
    plain = openai_client.completions.create(model=server.model, prompt=prompt, max_tokens=5, temperature=0,
                                             logprobs=0)
    banned = plain.choices[0].logprobs.tokens[0]
    banned_id = httpx.post(server.url + "/tokenize", json={"prompt": banned, "add_special_tokens": False}
                           ).json()["tokens"][0]
    kw = dict(presence_penalty=0.8, frequency_penalty=1.1, repetition_penalty=1.3, logit_bias={str(banned_id): -100})
    r = openai_client.completions.create(model=server.model, prompt=prompt, max_tokens=5, temperature=0, logprobs=0,
                                         extra_body={"repetition_penalty": kw.pop("repetition_penalty")}, **kw)
    got = httpx.post(server.url + "/tokenize", json={"prompt": "".join(r.choices[0].logprobs.tokens),
                                                    "add_special_tokens": False}).json()["tokens"]
    expected = _hf_greedy_with_penalties(hf, ids, 5, presence=0.8, frequency=1.1, repetition=1.3,
                                         bias={banned_id: -100.0})
    assert banned_id not in got and got == expected


def test_min_tokens_and_stop_token_ids(server):
    eos = httpx.post(server.url + "/tokenize", json={"prompt": "<|im_end|>", "add_special_tokens": False}
                     ).json()["tokens"][0]
    body = {"model": server.model, "prompt": "Hi", "max_tokens": 8, "temperature": 0, "logit_bias": {str(eos): 100}}
    quick = httpx.post(server.base_url + "/completions", json=body).json()
    held = httpx.post(server.base_url + "/completions", json={**body, "min_tokens": 4}).json()
    assert quick["usage"]["completion_tokens"] == 1 and held["usage"]["completion_tokens"] == 5
    stop = httpx.post(server.base_url + "/completions", json={**body, "logit_bias": {"28": 100},
                                                             "stop_token_ids": [28], "min_p": 0.5}).json()
    assert stop["usage"]["completion_tokens"] == 1 and stop["choices"][0]["finish_reason"] == "stop"


def test_tokenize_and_detokenize_round_trip(server):
    r = httpx.post(server.url + "/tokenize", json={"prompt": "Hello world", "return_token_strs": True}).json()
    assert r["count"] == len(r["tokens"]) and "".join(r["token_strs"]).endswith("Hello world")
    assert r["max_model_len"] > 0
    back = httpx.post(server.url + "/detokenize", json={"tokens": r["tokens"]}).json()
    assert back["prompt"].endswith("Hello world")
    chat = httpx.post(server.url + "/tokenize", json={"messages": MSG}).json()
    assert chat["count"] > r["count"]
    assert httpx.post(server.url + "/detokenize", json={"tokens": [-1]}).status_code == 400


@pytest.mark.parametrize("body, param", [
    ({"prompt": "a", "suffix": "b"}, "suffix"), ({"prompt": "a", "best_of": 3}, "best_of"),
    ({"prompt": "a", "logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"messages": MSG, "top_logprobs": 3}, "top_logprobs"),
])
def test_unsupported_or_bad_values_are_400(server, body, param):
    path = "/completions" if "prompt" in body else "/chat/completions"
    r = httpx.post(server.base_url + path, json={"model": server.model, **body})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_openai_client_sees_suffix_refused(server, openai_client):
    with pytest.raises(openai.BadRequestError):
        openai_client.completions.create(model=server.model, prompt="a", suffix="b")
