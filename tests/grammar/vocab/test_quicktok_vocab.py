"""Llama 3 and Qwen vocabularies from quicktok: sizes, end tokens, and bytes that round-trip the encoder."""
from __future__ import annotations

import random
import unicodedata

import pytest

from lightllm_struct.grammar.vocab.quicktok import QuicktokUnavailable, load_quicktok_vocab
from tests.grammar.vocab.test_hf_vocab import random_texts

# (name, size, end-of-text, end-of-turn): the published sizes and ids of these tokenizers.
CASES = [("llama3", 128256, 128001, 128009), ("qwen3", 151669, 151643, 151645)]


@pytest.mark.parametrize(("name", "size", "eot", "eot_turn"), CASES)
def test_sizes_and_end_tokens(name, size, eot, eot_turn):
    v = load_quicktok_vocab(name)
    assert v.vocab_size == size == len(v.vocab)
    assert v.eos_token_ids[0] == eot and eot_turn in v.eos_token_ids
    assert set(v.eos_token_ids) <= set(v.special_token_ids)
    assert all(v.vocab[i] for i in range(size) if i not in set(v.special_token_ids))


@pytest.mark.parametrize("name", ["llama3", "qwen3"])
def test_encode_concatenates_to_text(name):
    v = load_quicktok_vocab(name)
    for text in random_texts(300, seed=5):
        ids = v.encode(text)
        # Qwen's tokenizer NFC-normalizes its input (its tokenizer.json has an NFC normalizer).
        expected = unicodedata.normalize("NFC", text) if name == "qwen3" else text
        assert v.decode_bytes(ids) == expected.encode("utf-8")
        assert not set(ids) & set(v.special_token_ids)


@pytest.mark.parametrize("name", ["llama3", "qwen3"])
def test_token_bytes_match_encoder(name):
    v = load_quicktok_vocab(name)
    rng = random.Random(6)
    ids = [rng.randrange(v.vocab_size) for _ in range(3000)]
    assert all(v.vocab[i] == v.encoder.decode_single_token_bytes(i) for i in ids)
    assert v.vocab[v.encode(" the")[0]] == b" the"


def test_special_strings_are_text_when_encoding():
    v = load_quicktok_vocab("llama3")
    ids = v.encode("<|eot_id|>")
    assert 128009 not in ids and v.decode_bytes(ids) == b"<|eot_id|>"


def test_unknown_name_raises():
    with pytest.raises(QuicktokUnavailable):
        load_quicktok_vocab("gpt2")
