from __future__ import annotations

import pytest

from lightllm_struct.engine.tokenizer import Tokenizer, TokenizerLoadError
from lightllm_struct.errors import InvalidRequestError
from lightllm_struct.models.loader import resolve_model_dir


@pytest.fixture(scope="module")
def model_dir():
    return resolve_model_dir(None)


@pytest.fixture(scope="module")
def tok(model_dir):
    return Tokenizer(model_dir)


def test_eos_and_vocab(tok):
    assert tok.eos_token_ids == [tok.backend.token_to_id("<|im_end|>")]
    assert tok.vocab_size == 49152


def test_chat_template_matches_transformers(tok, model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(model_dir)
    for messages in ([{"role": "user", "content": "hi"}],
                     [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
                      {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}]):
        for gen in (True, False):
            expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert tok.apply_chat_template(messages, add_generation_prompt=gen) == expected


def test_incremental_detokenization_never_splits_characters(tok):
    text = "naïve café — 日本語のテキスト 🎉🚀 ok"
    ids = tok.encode(text, add_special_tokens=False)
    detok = tok.detokenizer()
    pieces = [detok.step(i) for i in ids]
    assert "".join(pieces) == text == tok.decode(ids)
    assert all("\ufffd" not in p for p in pieces)
    assert any(p == "" for p in pieces)  # some tokens hold only part of a character


def test_special_tokens_are_not_text(tok):
    eos = tok.eos_token_ids[0]
    detok = tok.detokenizer()
    assert detok.step(eos) == "" and tok.decode([eos]) == ""


def test_missing_template_and_missing_files_are_typed_errors(tok, tmp_path):
    with pytest.raises(TokenizerLoadError):
        Tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text((tok.model_dir / "tokenizer.json").read_text())
    bare = Tokenizer(tmp_path)
    with pytest.raises(InvalidRequestError):
        bare.apply_chat_template([{"role": "user", "content": "x"}])


def test_a_long_encode_lets_other_threads_run(tok):
    # the server encodes prompts in a worker thread: holding the GIL there froze the event loop (issue 11)
    import threading
    import time

    text = "ab " * 300_000
    ticks, done = 0, threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    start = time.monotonic()
    ids = tok.encode(text)
    took = time.monotonic() - start
    done.set()
    ticker.join()
    assert ids == tok.backend.encode(text).ids
    assert ticks >= min(20, took * 100), f"{ticks} ticks of another thread during a {took:.2f} s encode"
