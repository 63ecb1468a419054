"""Stop handling against a scripted token stream (no model): stop strings, held-back text, ids, lengths."""
from __future__ import annotations

import pytest

from lightllm_struct.engine.output_processor import append_token, make_output
from lightllm_struct.engine.sequence import Sequence
from lightllm_struct.engine.tokenizer import Tokenizer
from lightllm_struct.models.loader import resolve_model_dir
from lightllm_struct.request import Request, SamplingParams

EOS = 2


@pytest.fixture(scope="module")
def tok():
    return Tokenizer(resolve_model_dir(None))


def _run(tok, text, **params):
    """Feed ``text``'s tokens one by one; returns (streamed snapshots, final output)."""
    seq = Sequence(req=Request(prompt_token_ids=[1], sampling=SamplingParams(**params)), seed=0,
                   detokenizer=tok.detokenizer())
    snapshots = []
    for t in tok.encode(text, add_special_tokens=False) + [EOS]:
        append_token(seq, t, eos_token_ids=frozenset({EOS}), max_model_len=10_000)
        snapshots.append(make_output(seq))
        if seq.finished:
            break
    return snapshots, snapshots[-1]


def test_eos_stops_without_text(tok):
    _, out = _run(tok, "Hello there")
    assert out.finish_reason == "stop" and out.text == "Hello there" and out.token_ids[-1] == EOS


def test_stop_string_is_cut_and_never_streamed(tok):
    snaps, out = _run(tok, "The answer is 42. END of story", stop=["END"])
    assert out.text == "The answer is 42. " and out.finish_reason == "stop" and out.stop_reason == "END"
    assert all("E" not in s.text[len("The answer is 42. "):] for s in snaps)
    texts = [s.text for s in snaps]
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))  # streamed text only grows


def test_stop_string_prefix_is_held_back_then_released(tok):
    snaps, out = _run(tok, "a ## b", stop=["###"])
    assert out.text == "a ## b" and out.finish_reason == "stop" and out.stop_reason is None
    held = [s.text for s in snaps if not s.finished]
    assert all(not t.endswith("#") for t in held)


def test_stop_string_spanning_tokens_and_include_option(tok):
    _, out = _run(tok, "one two three four", stop=["o thr"], include_stop_str_in_output=True)
    assert out.text == "one two thr"


def test_stop_token_ids_and_max_tokens(tok):
    ids = tok.encode(" alpha beta gamma delta", add_special_tokens=False)
    _, out = _run(tok, " alpha beta gamma delta", stop_token_ids=[ids[2]])
    assert out.token_ids == ids[:3] and out.stop_reason == ids[2] and out.finish_reason == "stop"
    _, out = _run(tok, " alpha beta gamma delta", max_tokens=2)
    assert out.token_ids == ids[:2] and out.finish_reason == "length"


def test_ignore_eos_keeps_going(tok):
    seq = Sequence(req=Request(prompt_token_ids=[1], sampling=SamplingParams(ignore_eos=True, max_tokens=3)),
                   seed=0, detokenizer=tok.detokenizer())
    for _ in range(3):
        append_token(seq, EOS, eos_token_ids=frozenset({EOS}), max_model_len=100)
    assert make_output(seq).finish_reason == "length"
