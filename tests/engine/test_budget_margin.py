"""Budget-aware masks engage only within ``grammar_budget_margin`` bytes of the budget (far from it the
exact check, ~0.3 ms a mask, is skipped), and an answer still ends complete and valid at the limit."""
from __future__ import annotations

import json

import jsonschema
import pytest

from lightllm_struct.engine.budget import budget_for_mask
from lightllm_struct.config import ConfigError, EngineConfig
from lightllm_struct.request import Constraint, SamplingParams

SCHEMA = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"],
          "additionalProperties": False}


class _Seq:
    def __init__(self, *, max_tokens, num_output, finish):
        self.req = type("R", (), {"sampling": SamplingParams(max_tokens=max_tokens)})()
        self.num_output, self.num_tokens = num_output, 10 + num_output
        self.matcher = type("M", (), {"shortest_finish": lambda self: finish})()


@pytest.mark.parametrize(("max_tokens", "num_output", "finish", "margin", "expected"), [
    (1000, 0, 10.0, 256, None),      # 989 bytes of slack: far, no check
    (300, 0, 10.0, 256, None),       # 289 bytes of slack >= 256
    (100, 0, 10.0, 256, 100),        # 89 < 256: near, the budget reaches the mask
    (100, 97, 2.0, 1, 3),            # the last safe moment (slack 0) still engages with margin 1
    (100, 0, 10.0, 0, None),         # 0 turns budget-aware masks off
    (100, 0, 10.0, 2**31 - 1, 100),  # a huge margin checks every step
])
def test_the_budget_reaches_the_mask_only_within_the_margin(max_tokens, num_output, finish, margin, expected):
    seq = _Seq(max_tokens=max_tokens, num_output=num_output, finish=finish)
    assert budget_for_mask(seq, None, margin) == expected


def test_a_negative_margin_is_refused():
    with pytest.raises(ConfigError):
        EngineConfig(grammar_budget_margin=-1)


@pytest.mark.parametrize("margin", [1, 64])
def test_runaway_strings_still_end_valid_at_the_limit(llm, margin):
    """At temperature 1 the default model runs on inside a free string; with the margin engaged late the
    answer still closes by max_tokens."""
    llm.engine.grammar.budget_margin = margin
    try:
        outs = llm.generate(["Write a very long note about the sea:"] * 3,
                            [SamplingParams(temperature=1.0, max_tokens=40, seed=s) for s in range(3)],
                            constraints=Constraint("json_schema", SCHEMA))
    finally:
        llm.engine.grammar.budget_margin = EngineConfig().grammar_budget_margin
    for out in outs:
        assert out.finish_reason == "stop" and out.num_output_tokens <= 40
        jsonschema.validate(json.loads(out.text), SCHEMA)
