"""SamplingParams refuses, at the edge, every value the step's tensors cannot hold (one request once failed
every step of the engine with a seed of 2**64)."""
from __future__ import annotations

import math

import pytest

from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.request import INT32_MAX, INT64_MAX, INT64_MIN, SamplingParams


@pytest.mark.parametrize(("field", "value"), [
    ("seed", 2**64), ("seed", INT64_MAX + 1), ("seed", INT64_MIN - 1), ("seed", 1.5), ("seed", True),
    ("top_k", 2**63), ("top_k", INT32_MAX + 1), ("top_k", -1), ("top_k", 2.0),
    ("max_tokens", 0), ("max_tokens", 2**40), ("max_tokens", True),
    ("temperature", math.inf), ("temperature", math.nan), ("temperature", -0.1), ("temperature", "1"),
    ("top_p", math.nan), ("top_p", 0.0), ("top_p", 1.5),
    ("stop_token_ids", (2**63,)), ("stop_token_ids", (-1,)),
    ("presence_penalty", 2.5), ("frequency_penalty", math.nan), ("repetition_penalty", 0.0),
    ("repetition_penalty", math.inf), ("min_p", -0.1), ("min_tokens", 300), ("min_tokens", -1),
    ("logit_bias", {5: 101}), ("logit_bias", {-1: 1}), ("logit_bias", {"5": 1}), ("logit_bias", {5: math.nan}),
    ("logprobs", 21), ("logprobs", -1), ("prompt_logprobs", 2.0), ("logprobs_mode", "raw"),
])
def test_out_of_range_values_are_refused_with_their_name(field, value):
    with pytest.raises(InvalidRequestError) as info:
        SamplingParams(**{field: value})
    assert info.value.param == field


@pytest.mark.parametrize(("field", "value"), [
    ("seed", INT64_MAX), ("seed", INT64_MIN), ("seed", 0), ("top_k", INT32_MAX), ("max_tokens", INT32_MAX),
    ("temperature", 0), ("top_p", 1), ("stop_token_ids", (0, INT32_MAX)), ("presence_penalty", -2),
    ("frequency_penalty", 2), ("repetition_penalty", 100), ("min_p", 1), ("min_tokens", 256),
    ("logit_bias", {INT32_MAX: -100, 0: 100}), ("logprobs", 20), ("prompt_logprobs", 0),
    ("logprobs_mode", "raw_logprobs"),
])
def test_extremes_inside_the_ranges_are_taken(field, value):
    assert getattr(SamplingParams(**{field: value}), field) == value



def test_constraint_is_part_of_the_public_face():
    import lightllm_struct
    from lightllm_struct.request import Constraint

    assert lightllm_struct.Constraint is Constraint
    assert Constraint("json_schema", {"b": 1, "a": 2}).canonical() == Constraint("json_schema", {"a": 2, "b": 1}).canonical()
    with pytest.raises(InvalidRequestError, match="unknown constraint kind"):
        Constraint("xml", "<a/>")
    with pytest.raises(InvalidRequestError, match="choice constraint cannot take"):
        Constraint("choice", [])
