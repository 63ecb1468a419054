"""The ``duration`` format (patterns.DURATION, RFC 3339 appendix A; examples in test_strings.FORMAT_CASES): sound
against the oracle (``jsonschema``'s checker, isoduration) on random strings, and enforced in a schema."""
from __future__ import annotations

import random
import re

import jsonschema

from lightllm_struct.grammar.json_schema.patterns import FORMATS
from tests.grammar.json_schema.helpers import SchemaGrammar


def test_duration_is_within_what_jsonschema_reads():
    """Sound against the oracle: every sampled string the duration regex takes, isoduration takes too."""
    checker, rng = jsonschema.Draft202012Validator.FORMAT_CHECKER, random.Random(5)
    parts = ["P", "T", "1", "12", "0", "Y", "M", "D", "W", "H", "S", ".5", "-"]
    taken = [t for t in ("".join(rng.choice(parts) for _ in range(rng.randint(1, 8))) for _ in range(60000))
             if re.fullmatch(FORMATS["duration"], t)]
    assert len(taken) > 20 and all(checker.conforms(t, "duration") for t in taken)


def test_a_duration_property_is_enforced():
    g = SchemaGrammar({"type": "object", "properties": {"d": {"type": "string", "format": "duration"}}})
    for value in ({"d": "PT1M"}, {"d": "invalid-duration"}, {"d": "P1Y"}, {}):
        g.check(value)
