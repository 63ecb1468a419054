"""Long bounded strings (lazy DFAs and lazy product lexers) under the real Llama 3 vocabulary."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from lightllm_struct.grammar import Matcher
from tests.grammar.vocab_fixtures import compiled_schema, encoder, vocab_bundle

BODY_SCHEMA = {"type": "object", "properties": {"body": {"type": "string", "maxLength": 2000}},
               "required": ["body"], "additionalProperties": False}
SCHEMAS = Path(__file__).resolve().parents[3] / "benchmarks" / "schemas"
# characters of 1 to 4 UTF-8 bytes, escapes, and spaces that tokenizers merge
_CHARS = "ab cdé中😀\n\"\\xyz 12"


def _text(length: int) -> str:
    return "".join(_CHARS[(i * 7) % len(_CHARS)] for i in range(length))


def _walk(grammar, text: str, *, check_masks_at: tuple[int, ...] = ()) -> bool:
    """Feed the vocabulary's own tokens of ``text``; True iff all are accepted and EOS may end it."""
    ids = encoder("llama3")(text)
    eos = vocab_bundle("llama3")[1][0]
    matcher = Matcher(grammar)
    checks = {i % (len(ids) + 1) for i in check_masks_at}
    for step, tid in enumerate(ids):
        allowed = set(matcher.allowed_token_ids()) if step in checks else None
        accepted = matcher.accept_token(tid)
        if allowed is not None:
            assert (tid in allowed) == accepted, f"mask and accept disagree on token {step}"
        if not accepted:
            return False
    if len(ids) in checks:
        assert (eos in set(matcher.allowed_token_ids())) == matcher.is_complete()
    return matcher.accept_token(eos)


@pytest.mark.parametrize("length", [0, 1, 1999, 2000, 2001])
def test_max_length_2000_exact_under_real_tokens(length):
    grammar = compiled_schema("llama3", json.dumps(BODY_SCHEMA))
    instance = {"body": _text(length)}
    text = json.dumps(instance, ensure_ascii=False, separators=(",", ":"))
    valid = jsonschema.Draft202012Validator(BODY_SCHEMA).is_valid(instance)
    assert valid == (length <= 2000)
    assert _walk(grammar, text, check_masks_at=(0, 1, 2, -3, -2, -1)) == valid


def test_max_length_counts_code_points_not_bytes():
    grammar = compiled_schema("llama3", json.dumps(BODY_SCHEMA))
    for body, valid in (("😀" * 2000, True), ("😀" * 2001, False), ("\\" * 1000 + "é" * 1000, True)):
        text = json.dumps({"body": body}, ensure_ascii=False, separators=(",", ":"))
        assert _walk(grammar, text) == valid


@pytest.mark.parametrize("name", ["article", "sql_query_tool"])
def test_long_string_benchmark_schemas_compile_and_accept_their_instance(name):
    spec = json.loads((SCHEMAS / f"{name}.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(spec["schema"]).validate(spec["instance"])
    grammar = compiled_schema("llama3", json.dumps(spec["schema"]))
    text = json.dumps(spec["instance"], ensure_ascii=False, separators=(",", ":"))
    assert _walk(grammar, text, check_masks_at=tuple(range(0, 200, 7)))
