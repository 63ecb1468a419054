"""Budget-aware masks run at every step, however far the budget: a single token can push the shortest
finish out by any amount, so no margin is safe. Answers end complete and valid at the limit."""
from __future__ import annotations

import json

import jsonschema
import pytest

from lightllm_struct.config import EngineConfig
from lightllm_struct.engine.budget import budget_for_mask
from lightllm_struct.request import Constraint, SamplingParams

SCHEMA = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"],
          "additionalProperties": False}
# An item's "{" opens about 90 bytes of required keys at once
JUMP = {"type": "object", "required": ["items"], "additionalProperties": False, "properties": {"items": {
    "type": "array", "items": {"type": "object", "required": ["q" * 40, "z" * 40], "additionalProperties": False,
                               "properties": {"q" * 40: {"type": "string"}, "z" * 40: {"type": "integer"}}}}}}


class _Seq:
    def __init__(self, *, max_tokens, num_output):
        self.req = type("R", (), {"sampling": SamplingParams(max_tokens=max_tokens)})()
        self.num_output, self.num_tokens = num_output, 10 + num_output
        self.matcher = type("M", (), {"budget_exact": True})()


@pytest.mark.parametrize(("max_tokens", "num_output"), [(100_000, 0), (1000, 0), (100, 97), (3, 2)])
def test_the_budget_reaches_the_mask_at_every_step(max_tokens, num_output):
    assert budget_for_mask(_Seq(max_tokens=max_tokens, num_output=num_output), None) == max_tokens - num_output


def test_there_is_no_margin_to_set():
    assert not hasattr(EngineConfig(), "grammar_budget_margin")


@pytest.mark.parametrize("schema", [SCHEMA, JUMP], ids=["runaway_string", "jump"])
def test_answers_still_end_valid_at_the_limit(llm, schema):
    """At temperature 1 the default model runs on inside free strings, or opens item after item; each
    answer still closes by max_tokens."""
    outs = llm.generate(["Write a very long note about the sea:"] * 3,
                        [SamplingParams(temperature=1.0, max_tokens=60, seed=s) for s in range(3)],
                        constraints=Constraint("json_schema", schema))
    for out in outs:
        assert out.finish_reason == "stop" and out.num_output_tokens <= 60
        jsonschema.validate(json.loads(out.text), schema)
