"""vocab_from_huggingface: token bytes must concatenate to exactly what the tokenizer itself decodes."""
from __future__ import annotations

import random

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from lightllm_struct.grammar.vocab.huggingface import UnsupportedTokenizer, bytes_to_unicode, vocab_from_huggingface
from tests.grammar.vocab_fixtures import smollm2_tokenizer, smollm2_vocab

_ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \n\t  ", '{}[]:,"\\/.-_+*#@!?',
    "éèüößçñåøæ", "中文字符日本語한국어", "αβγδ Ωπ", "😀🚀👍🏽🇫🇷👨‍👩‍👧", "\u0301\u200b\u00a0\ufeff",
]


def random_texts(n: int, *, seed: int) -> list[str]:
    """Mixed-script texts: ASCII words, JSON punctuation, whitespace runs, accents, CJK, emoji (incl. ZWJ)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            alphabet = rng.choice(_ALPHABETS)
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))))
            parts.append(rng.choice(["", " ", "  ", "\n"]))
        texts.append("".join(parts))
    return texts


def concat(vocab: list[bytes], ids: list[int]) -> str:
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")


def test_bytes_to_unicode_is_gpt2_table():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"


def test_smollm2_size_specials_and_eos():
    tok = smollm2_tokenizer()
    vocab, eos, special = smollm2_vocab()
    assert len(vocab) == len(tok) == 49152
    assert tok.eos_token_id in eos and eos[0] == tok.eos_token_id
    assert set(tok.all_special_ids) <= set(special)
    assert vocab[tok.convert_tokens_to_ids("Ġthe")] == b" the"
    assert b"\n" in vocab


def test_smollm2_encoded_texts_roundtrip():
    tok = smollm2_tokenizer()
    vocab, _, _ = smollm2_vocab()
    for text in random_texts(300, seed=1):
        ids = tok.encode(text, add_special_tokens=False)
        assert b"".join(vocab[i] for i in ids) == text.encode("utf-8")


def test_smollm2_random_token_sequences_decode_like_hf():
    tok = smollm2_tokenizer()
    vocab, _, special = smollm2_vocab()
    text_ids = sorted(set(range(len(vocab))) - set(special))
    rng = random.Random(2)
    for _ in range(1500):
        # Random ids split UTF-8 characters, so this also checks the partial-character bytes.
        ids = [rng.choice(text_ids) for _ in range(rng.randint(1, 10))]
        assert tok.backend_tokenizer.decode(ids, skip_special_tokens=False) == concat(vocab, ids)


def test_smollm2_special_tokens_are_flagged_not_text():
    tok = smollm2_tokenizer()
    vocab, _, special = smollm2_vocab()
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in special and vocab[im_end] == b"<|im_end|>"
    ids = tok.encode("x<|im_end|>y", add_special_tokens=False)
    assert im_end in ids  # a special token's text encodes to the control token, not to its letters


def _byte_tokens() -> list[str]:
    return [f"<0x{b:02X}>" for b in range(256)]


def _corpus() -> list[str]:
    return random_texts(200, seed=3) + ["hello world the quick brown fox jumps over the lazy dog"] * 20


def llama2_style_bpe() -> Tokenizer:
    """A tiny Llama-2-style tokenizer: ▁ for spaces, BPE with <0xNN> byte fallback, Strip decoder."""
    trainer_tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer_tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=list("▁abcdefghijklmnopqrstuvwxyz"), limit_alphabet=40)
    trainer_tok.train_from_iterator(_corpus(), trainer=trainer)
    trained = trainer_tok.get_vocab()
    pieces = ["<unk>", "<s>", "</s>", *_byte_tokens()]
    pieces += [p for p, _ in sorted(trained.items(), key=lambda kv: kv[1]) if p not in pieces]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in __import__("json").loads(trainer_tok.to_str())["model"]["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = trainer_tok.normalizer
    tok.pre_tokenizer = trainer_tok.pre_tokenizer
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


def metaspace_unigram() -> Tokenizer:
    """A tiny Unigram tokenizer with a Metaspace pre-tokenizer/decoder and <0xNN> byte fallback."""
    words = "▁the ▁quick ▁brown ▁fox ▁hello ▁world the ing ed ▁a ▁ a b c d e f g h i j k l m n o p q r s t u v w x y z"
    pieces = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    pieces += [(p, -20.0) for p in _byte_tokens()]
    pieces += [(w, -float(len(w) < 3) * 3 - 1.0) for w in words.split(" ")]
    tok = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace()])
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    return tok


@pytest.mark.parametrize("build", [llama2_style_bpe, metaspace_unigram])
def test_sentencepiece_style_roundtrip(build):
    tok = build()
    vocab, eos, special = vocab_from_huggingface(tok)
    assert len(vocab) == tok.get_vocab_size(with_added_tokens=True)
    assert vocab[tok.token_to_id("<0x41>")] == b"A" and vocab[tok.token_to_id("<0xF0>")] == b"\xf0"
    assert {0, 1, 2} <= set(special) and eos == [2]
    anchor = tok.token_to_id("a")  # no ▁: the decoders strip only a leading space of the whole output
    for text in random_texts(200, seed=4):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert anchor not in special and 0 not in ids, text  # byte fallback covers everything
        assert tok.decode([anchor, *ids], skip_special_tokens=False) == "a" + concat(vocab, ids)


def test_sentencepiece_uses_byte_fallback_and_space_marker():
    tok = llama2_style_bpe()
    vocab, _, _ = vocab_from_huggingface(tok)
    ids = tok.encode("hello 😀", add_special_tokens=False).ids
    assert b"".join(vocab[i] for i in ids) == " hello 😀".encode()  # the normalizer prepends the ▁
    assert sum(1 for i in ids if len(vocab[i]) == 1 and vocab[i][0] >= 0x80) == 4


def test_transformers_wrapper_of_sentencepiece_tokenizer():
    from transformers import PreTrainedTokenizerFast

    raw = llama2_style_bpe()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", bos_token="<s>", unk_token="<unk>")
    tok.add_tokens(["<tool_call>"])  # an added, non-special token: literal text
    vocab, eos, special = vocab_from_huggingface(tok)
    assert len(vocab) == len(tok)
    tool = tok.convert_tokens_to_ids("<tool_call>")
    assert vocab[tool] == b"<tool_call>" and tool not in special
    assert eos == [tok.eos_token_id]


def test_wordpiece_is_rejected():
    tok = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    tok.decoder = decoders.WordPiece()
    with pytest.raises(UnsupportedTokenizer):
        vocab_from_huggingface(tok)
