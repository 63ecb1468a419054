"""The matcher on real vocabularies: SmolLM2 (49k, the default model), Llama 3 (128k) and Qwen (151k), plus
a SentencePiece-style byte-fallback vocabulary.

On each: the tokenizer's own encoding of a valid instance is accepted step by step, control tokens are
never allowed, EOS is allowed exactly at the end, the bitmask has ceil(V/32) words, and random walks
finish in outputs `jsonschema` accepts.
"""
from __future__ import annotations

import json
import random

import jsonschema
import pytest

from lightllm_struct.grammar import GrammarCompiler, Matcher, TokenizerInfo, allocate_token_bitmask
from tests.grammar.vocab.test_hf_vocab import llama2_style_bpe
from tests.grammar.vocab_fixtures import bench_spec, compiled_schema, encoder, token_of_bytes, vocab_bundle
from tests.grammar.walks import allowed_ids, force_trace, random_segmentation, random_walk

VOCABS = ["smollm2", "llama3", "qwen3"]
STEMS = ["tool_call_weather", "invoice"]


@pytest.mark.parametrize("vocab_name", VOCABS)
@pytest.mark.parametrize("stem", STEMS)
def test_own_encoding_accepted_and_specials_never_allowed(vocab_name, stem):
    vocab, eos, special = vocab_bundle(vocab_name)
    spec = bench_spec(stem)
    grammar = compiled_schema(vocab_name, json.dumps(spec["schema"]))
    text = json.dumps(spec["instance"], separators=(",", ":"), ensure_ascii=False)
    tokens = encoder(vocab_name)(text)
    matcher = Matcher(grammar)
    mask = allocate_token_bitmask(1, len(vocab))
    assert tuple(mask.shape) == (1, (len(vocab) + 31) // 32)
    controls = set(special) - set(eos)
    for step, token in enumerate(tokens):
        matcher.fill_next_token_bitmask(mask, index=0)
        allowed = set(allowed_ids(mask, len(vocab)).tolist())
        assert token in allowed, f"step {step}: {vocab[token]!r} masked off"
        assert not allowed & controls, f"step {step}: control tokens allowed"
        assert not allowed & set(eos), f"step {step}: EOS allowed before the instance is complete"
        assert matcher.accept_token(token)
    matcher.fill_next_token_bitmask(mask, index=0)
    assert set(eos) & set(allowed_ids(mask, len(vocab)).tolist())
    assert matcher.accept_token(eos[0]) and matcher.is_terminated()


@pytest.mark.parametrize("vocab_name", VOCABS)
def test_random_walks_valid(vocab_name):
    vocab, eos, _ = vocab_bundle(vocab_name)
    schema = bench_spec("tool_call_weather")["schema"]
    grammar = compiled_schema(vocab_name, json.dumps(schema))
    finished = 0
    for seed in range(4):
        walk = random_walk(grammar, vocab, eos, random.Random(seed), soft_cap=30, closers=(b'"', b"}"))
        if walk.ended:
            finished += 1
            jsonschema.validate(json.loads(walk.text.decode("utf-8")), schema)
    assert finished >= 2


@pytest.mark.parametrize("vocab_name", VOCABS)
def test_random_split_accepted(vocab_name):
    vocab, eos, _ = vocab_bundle(vocab_name)
    spec = bench_spec("tool_call_weather")
    grammar = compiled_schema(vocab_name, json.dumps(spec["schema"]))
    data = json.dumps(spec["instance"], separators=(",", ":")).encode()
    table, max_len = token_of_bytes(vocab_name)
    for seed in range(3):
        tokens = random_segmentation(data, table, max_len, random.Random(seed))
        assert force_trace(grammar, len(vocab), tokens, eos) == "ok"


def test_sentencepiece_byte_fallback_vocabulary():
    """▁ pieces and <0xNN> byte tokens: an emoji can only be spelt with byte-fallback tokens here."""
    tok = llama2_style_bpe()
    info = TokenizerInfo.from_huggingface(tok)
    from lightllm_struct.grammar.vocab.huggingface import vocab_from_huggingface

    vocab, eos, special = vocab_from_huggingface(tok)
    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 9}}, "required": ["s"],
              "additionalProperties": False}
    grammar = GrammarCompiler(info).compile_json_schema(schema)
    table = {v: i for i, v in enumerate(vocab) if v and i not in set(special)}
    data = '{"s":"the 😀 fox"}'.encode()
    for seed in range(3):
        tokens = random_segmentation(data, table, max(map(len, table)), random.Random(seed))
        assert force_trace(grammar, len(vocab), tokens, eos) == "ok"
    too_long = '{"s":"the quick fox"}'.encode()
    assert force_trace(grammar, len(vocab), random_segmentation(too_long, table, 1, random.Random(0)), eos) != "ok"
